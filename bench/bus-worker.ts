/** The worker side of the bus benchmark: an EchoActor on the worker's own bus, envelopes msgpack-encoded both ways. */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Bus } from '../src/bus/bus.js';
import { decodeEnvelope, nextId, type Envelope, type RequestBody } from '../src/bus/envelope.js';
import { toTabAgentError } from '../src/protocol/errors.js';
import { EchoActor, postEnvelope } from './bus.js';

const port = (workerData as { port: MessagePort }).port;
const bus = new Bus();
bus.open('echo', { mailboxCapacity: 65_536, concurrency: 65_536 });
bus.attach('echo', new EchoActor(bus));

port.on('message', (buf: Uint8Array) => {
  const req = decodeEnvelope(buf) as Envelope<RequestBody>;
  const reply = (kind: 'reply' | 'error', body: unknown): void =>
    postEnvelope(port, { id: nextId(), kind, from: 'echo', to: req.from, correlationId: req.id, priority: req.priority, traceId: req.traceId, body });
  bus.request('echo', req.body, { from: req.from, priority: req.priority }).then(
    (data) => reply('reply', data),
    (err: unknown) => reply('error', toTabAgentError(err).toBody()),
  );
});
parentPort!.postMessage('ready');
