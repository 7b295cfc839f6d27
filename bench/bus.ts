/** The bus benchmark (issue 2): request/reply round trips per second and per-hop latency, in-thread and across a worker thread. */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { Actor } from '../src/actors/actor.js';
import { Bus, type BusTarget, type RequestContext } from '../src/bus/bus.js';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../src/bus/envelope.js';
import { TabAgentError } from '../src/protocol/errors.js';
import { silentLog } from '../src/runtime/logger.js';
import type { Outcome, Profile } from './harness/types.js';

/** The trivial actor: replies with its payload. */
export class EchoActor extends Actor {
  constructor(bus: Bus, address = 'echo') {
    super(address, bus, silentLog);
    this.on('echo', (payload: unknown) => payload);
  }
}

const PAYLOAD = { text: 'ping', n: 1 };

interface BusClient {
  bus: Bus;
  to: string;
  seq: number;
  close(): Promise<void>;
}

function call(c: BusClient): Promise<Outcome> {
  const requestId = `bench-${c.seq++}`;
  return c.bus.request(c.to, { route: 'echo', payload: PAYLOAD, requestId }, { from: 'bench' }).then(
    () => ({ ok: true }),
    (err: unknown) => ({ ok: false, code: err instanceof TabAgentError ? err.code : 'EXCEPTION', message: String(err) }),
  );
}

export const busInThread: Profile<BusClient> = {
  name: 'bus',
  transport: 'bus',
  description: 'Bus request/reply to a trivial actor in the same thread (2 hops: request, reply)',
  needs: { server: false },
  sharedClient: true,
  defaults: { concurrency: 1, durationS: 3 },
  async setup() {
    const bus = new Bus();
    bus.open('echo', { mailboxCapacity: 65_536, concurrency: 65_536 });
    bus.attach('echo', new EchoActor(bus));
    return { bus, to: 'echo', seq: 0, close: async () => bus.close('echo') };
  },
  request: call,
  teardown: (c) => c.close(),
};

/**
 * The main-thread side of a worker actor: each request envelope is msgpack-encoded, posted over a
 * MessagePort, served by an EchoActor on the worker's own bus, and the reply envelope comes back encoded.
 */
class WorkerProxy implements BusTarget {
  private readonly waiting = new Map<string, { resolve(v: unknown): void; reject(e: unknown): void }>();

  constructor(private readonly port: MessagePort) {
    port.on('message', (buf: Uint8Array) => {
      const env = decodeEnvelope(buf);
      const w = this.waiting.get(env.correlationId!);
      if (!w) return;
      this.waiting.delete(env.correlationId!);
      if (env.kind === 'reply') w.resolve(env.body);
      else {
        const e = env.body as { code?: string; message?: string };
        w.reject(new TabAgentError((e.code ?? 'INTERNAL_ERROR') as never, e.message ?? 'worker error'));
      }
    });
  }

  receive(ctx: RequestContext): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.waiting.set(ctx.envelope.id, { resolve, reject });
      postEnvelope(this.port, ctx.envelope);
    });
  }
}

/** Copies the encoded bytes into their own buffer and transfers it (a view of msgpackr's shared buffer would clone all of it). */
export function postEnvelope(port: MessagePort, env: Envelope): void {
  const bytes = Uint8Array.prototype.slice.call(encodeEnvelope(env));
  port.postMessage(bytes, [bytes.buffer as ArrayBuffer]);
}

export const busWorker: Profile<BusClient> = {
  name: 'bus-worker',
  transport: 'bus',
  description: 'Bus request/reply to a trivial actor in a worker thread (envelopes msgpack-encoded over a MessagePort; 6 hops)',
  needs: { server: false },
  sharedClient: true,
  defaults: { concurrency: 1, durationS: 3 },
  async setup() {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(new URL('./bus-worker.js', import.meta.url), { workerData: { port: port2 }, transferList: [port2] });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    const bus = new Bus();
    bus.open('worker.echo', { mailboxCapacity: 65_536, concurrency: 65_536 });
    bus.attach('worker.echo', new WorkerProxy(port1));
    return {
      bus,
      to: 'worker.echo',
      seq: 0,
      close: async () => {
        bus.close('worker.echo');
        port1.close();
        await worker.terminate();
      },
    };
  },
  request: call,
  teardown: (c) => c.close(),
};

export const profiles: Profile[] = [busInThread as Profile, busWorker as Profile];

/** A bare round-trip figure without the harness loop, for a quick look: node dist/bench/bus.js */
async function main(): Promise<void> {
  for (const p of [busInThread, busWorker]) {
    const c = await p.setup({} as never, 0);
    const n = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await p.request(c, i);
    const ms = performance.now() - t0;
    process.stderr.write(`${p.name}: ${Math.round((n * 1000) / ms)} round trips/s sequential, ${((ms * 1000) / n).toFixed(1)} µs each\n`);
    await p.teardown!(c);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
