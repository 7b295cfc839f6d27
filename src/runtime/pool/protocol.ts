/** Messages between the inference pool (main thread) and its worker threads: task payloads and control-channel messages. */
import type { ErrorBody } from '../../protocol/errors.js';
import type { EmbedResult, GenerateInput, GenerateResult, ModelInfo, SamplingParams } from '../inference/types.js';

/** Options each worker builds its InferenceEngine from (piscina workerData). */
export interface WorkerConfig {
  threads: number;
  contextSize: number;
  maxSequences: number;
  contexts: number;
  batchSize?: number;
  /** BroadcastChannel name for load/unload control. */
  channel: string;
  logLevel: string;
}

/**
 * A model as a task names it. `gen` is the load generation: a worker refuses tasks for a generation it has
 * already unloaded (so a task that raced an unload cannot load the model back), and loads lazily a model a
 * task names that it has not loaded yet (a worker started after the load, replacing a dead one).
 */
export interface ModelRef {
  id: string;
  path: string;
  gen: number;
}

/** Envelope routes of pool tasks and their payloads (carried msgpack-encoded in `PoolTask.env`). */
export interface TaskPayloads {
  generate: { model: ModelRef; input: GenerateInput; params: SamplingParams };
  embed: { model: ModelRef; inputs: string[] };
  tokenize: { model: ModelRef; text: string };
  detokenize: { model: ModelRef; tokens: number[] };
}
export type TaskRoute = keyof TaskPayloads;

export interface TaskResults {
  generate: GenerateResult;
  embed: EmbedResult;
  tokenize: number[];
  detokenize: string;
}

/** What piscina carries to a worker: the encoded envelope and, for streaming tasks, a transferred port. */
export interface PoolTask {
  env: Uint8Array;
  /** generate only: the worker posts text deltas (strings) on it; the pool posts CANCEL to stop the generation. */
  port?: import('node:worker_threads').MessagePort;
}

export type TaskReply<T = unknown> = { ok: true; result: T } | { ok: false; error: ErrorBody };

/** Posted by the pool on a task's port to stop its generation (the worker then resolves it as 'cancelled'). */
export const CANCEL = 'cancel';

export type ControlRequest =
  | { op: 'load'; seq: number; id: string; path: string; gen: number; target?: number }
  | { op: 'unload'; seq: number; id: string; gen: number }
  /** Ends one worker safely: its generations stop, llama.cpp finishes its native work, then the thread exits. */
  | { op: 'retire'; target: number };

export type ControlReply =
  | { op: 'hello'; threadId: number }
  | { op: 'done'; seq: number; threadId: number; ok: true; info?: ModelInfo }
  | { op: 'done'; seq: number; threadId: number; ok: false; error: ErrorBody };
