/** Inference worker thread (piscina entry): one InferenceEngine per thread; tasks arrive as msgpack envelopes. */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { decodeEnvelope, type RequestBody } from '../../bus/envelope.js';
import { TabAgentError, toTabAgentError } from '../../protocol/errors.js';
import { InferenceEngine } from '../inference/engine.js';
import { createLogger, type LogLevel } from '../logger.js';
import { CANCEL, type ControlReply, type ControlRequest, type ModelRef, type PoolTask, type TaskPayloads, type TaskReply, type WorkerConfig } from './protocol.js';

const config = workerData as WorkerConfig;
const log = createLogger(config.logLevel as LogLevel).child({ component: 'inference-worker', worker: threadId });
const engine = new InferenceEngine({
  threads: config.threads,
  contextSize: config.contextSize,
  maxSequences: config.maxSequences,
  contexts: config.contexts,
  ...(config.batchSize ? { batchSize: config.batchSize } : {}),
  log,
});

/** Highest generation of each model this worker was told to unload: tasks of that generation or older are refused. */
const unloadedGen = new Map<string, number>();
let retiring = false;

async function ensure(ref: ModelRef): Promise<void> {
  if ((unloadedGen.get(ref.id) ?? -1) >= ref.gen) {
    throw new TabAgentError('MODEL_NOT_LOADED', `model "${ref.id}" was unloaded`, { model: ref.id });
  }
  await engine.load(ref.id, ref.path);
}

const channel = new BroadcastChannel(config.channel);
const reply = (msg: ControlReply): void => channel.postMessage(msg);

channel.onmessage = (event) => {
  const msg = (event as MessageEvent).data as ControlRequest | ControlReply;
  if (msg.op === 'load') {
    if (msg.target !== undefined && msg.target !== threadId) return;
    ensure({ id: msg.id, path: msg.path, gen: msg.gen })
      .then(() => engine.info(msg.id))
      .then(
        (info) => reply({ op: 'done', seq: msg.seq, threadId, ok: true, info }),
        (err: unknown) => reply({ op: 'done', seq: msg.seq, threadId, ok: false, error: toTabAgentError(err).toBody() }),
      );
  } else if (msg.op === 'retire') {
    if (msg.target !== threadId) return;
    // Terminating a thread while llama.cpp runs aborts the whole process: stop the native work first. Tasks in
    // flight never reply, so the pool fails them when the thread exits.
    // Only the models are released: disposing this thread's llama instance would tear down the backend that the
    // other workers' instances share.
    retiring = true;
    void Promise.all(engine.loaded().map((id) => engine.unload(id))).finally(() => process.exit(1));
  } else if (msg.op === 'unload') {
    unloadedGen.set(msg.id, Math.max(msg.gen, unloadedGen.get(msg.id) ?? -1));
    engine.unload(msg.id).then(
      () => reply({ op: 'done', seq: msg.seq, threadId, ok: true }),
      (err: unknown) => reply({ op: 'done', seq: msg.seq, threadId, ok: false, error: toTabAgentError(err).toBody() }),
    );
  }
};
reply({ op: 'hello', threadId });

async function run(body: RequestBody, port: PoolTask['port']): Promise<unknown> {
  switch (body.route) {
    case 'generate': {
      const p = body.payload as TaskPayloads['generate'];
      await ensure(p.model);
      const ac = new AbortController();
      port?.on('message', (m) => {
        if (m === CANCEL) ac.abort();
      });
      const onText = port ? (delta: string) => port.postMessage(delta) : () => {};
      return engine.generate(p.model.id, p.input, p.params, onText, ac.signal);
    }
    case 'embed': {
      const p = body.payload as TaskPayloads['embed'];
      await ensure(p.model);
      return engine.embed(p.model.id, p.inputs);
    }
    case 'tokenize': {
      const p = body.payload as TaskPayloads['tokenize'];
      await ensure(p.model);
      return engine.tokenize(p.model.id, p.text);
    }
    case 'detokenize': {
      const p = body.payload as TaskPayloads['detokenize'];
      await ensure(p.model);
      return engine.detokenize(p.model.id, p.tokens);
    }
    default:
      throw new TabAgentError('ROUTE_NOT_FOUND', `the inference worker has no task '${body.route}'`);
  }
}

/** Errors travel as ErrorBody values: structured cloning would strip a TabAgentError's code and details. */
export default async function task(t: PoolTask): Promise<TaskReply> {
  const port = t.port;
  try {
    const env = decodeEnvelope(t.env) as { body: RequestBody };
    const result = await run(env.body, port);
    return retiring ? never() : { ok: true, result };
  } catch (err) {
    return retiring ? never() : { ok: false, error: toTabAgentError(err).toBody() };
  } finally {
    port?.close();
  }
}

function never(): Promise<never> {
  return new Promise(() => {});
}
