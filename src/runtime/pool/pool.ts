/** The inference pool: piscina worker threads that own every model, a priority queue in front, load/unload broadcast to all. */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel, MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina, queueOptionsSymbol } from 'piscina';
import { encodeEnvelope, nextId, type Priority } from '../../bus/envelope.js';
import { TabAgentError, type ErrorBody } from '../../protocol/errors.js';
import type { EmbedResult, GenerateInput, GenerateResult, ModelInfo, SamplingParams } from '../inference/types.js';
import type { Log } from '../logger.js';
import { PriorityTaskQueue, taskOptions, type QueueLimits, type QueuedTaskOptions, type Task } from './priority-queue.js';
import { CANCEL, type ControlReply, type ControlRequest, type ModelRef, type PoolTask, type TaskPayloads, type TaskReply, type TaskResults, type TaskRoute, type WorkerConfig } from './protocol.js';

/**
 * How tasks are spread over workers. `spread` (default): the least busy worker, so several cores decode at once
 * and each worker batches its share. `pack`: the worker already running most tasks of the same model, while it
 * has a free sequence, so one worker's batches are as full as possible. See docs/tuning.md for measurements.
 */
export type Placement = 'spread' | 'pack';

export interface InferencePoolOptions {
  workers: number;
  /** CPU threads per context (llama.cpp). */
  threads: number;
  /** Tokens of context per sequence. */
  contextSize: number;
  /** Concurrent generations per worker: each worker's context has this many sequences. */
  maxSequences: number;
  /** Contexts per model per worker (each decodes on its own core). Default 1. */
  contexts?: number;
  batchSize?: number;
  queueLimits: QueueLimits;
  agingMs: number;
  placement?: Placement;
  log?: Log;
  logLevel?: string;
  /** How long start() waits for every worker to come up. */
  startTimeoutMs?: number;
}

export interface ThreadPlan {
  workers: number;
  threads: number;
  cores: number;
  /** workers x threads x contexts exceeds the cores (only when the config asks for it). */
  oversubscribed: boolean;
}

/**
 * Thread policy: llama.cpp collapses when its threads exceed the cores (measured on 2 cores: 4 threads ~50x
 * slower than 1 on a tiny model, 2 threads ~2.5x slower), so by default threads = 1 and workers = cores / threads,
 * keeping workers x threads <= os.availableParallelism(). Explicit config values win (and are flagged when they
 * oversubscribe).
 */
export function planThreads(cfg: { workers?: number; threads?: number; contexts?: number }, cores = os.availableParallelism()): ThreadPlan {
  const threads = cfg.threads && cfg.threads > 0 ? cfg.threads : 1;
  const contexts = cfg.contexts && cfg.contexts > 0 ? cfg.contexts : 1;
  const workers = cfg.workers && cfg.workers > 0 ? cfg.workers : Math.max(1, Math.floor(cores / (threads * contexts)));
  return { workers, threads, cores, oversubscribed: workers * threads * contexts > cores };
}

export interface CallOptions {
  priority?: Priority;
  signal?: AbortSignal;
  requestId?: string;
}

export interface GenerateOptions extends CallOptions {
  onText?: (delta: string) => void;
  /** Called when the task leaves the queue and starts on a worker. */
  onStart?: () => void;
}

export interface PoolStats {
  workers: number;
  threads_per_worker: number;
  sequences_per_worker: number;
  capacity: number;
  running: number;
  queued: Record<Priority, number>;
  placement: Placement;
  worker_restarts: number;
}

interface ControlOp {
  kind: 'load' | 'unload';
  id: string;
  waiting: Set<number>;
  info?: ModelInfo;
  errors: ErrorBody[];
  done: number;
  onProgress?: (ready: number, total: number) => void;
  resolve: () => void;
}

interface PiscinaTaskInfo {
  task: unknown;
  done(err: Error | null, result?: unknown): void;
}

interface PlacedOptions extends QueuedTaskOptions {
  onStart?: () => void;
}

let poolCounter = 0;

function workerFile(): string {
  // Compiled, the worker is the .js beside this file; under tsx (tests) a shim registers tsx in the worker first.
  const js = fileURLToPath(new URL('./worker.js', import.meta.url));
  return existsSync(js) ? js : fileURLToPath(new URL('./worker-tsx.mjs', import.meta.url));
}

export class InferencePool {
  private readonly piscina: Piscina;
  private readonly queue: PriorityTaskQueue;
  private readonly channel: BroadcastChannel;
  /** Workers that have announced themselves on the control channel (their module is loaded). */
  private readonly known = new Set<number>();
  /** Models loaded or loading, by id, with their current generation. */
  private readonly models = new Map<string, ModelRef>();
  private readonly ops = new Map<number, ControlOp>();
  /** Tasks of each model running on each worker (for `pack` placement). */
  private readonly perWorker = new Map<number, Map<string, number>>();
  private readonly live = new Set<{ cancel(): void }>();
  private gen = 0;
  private seq = 0;
  private running = 0;
  private restarts = 0;
  private closed = false;
  /** Moving average of a generation's run time, for BUSY's retry-after hint. */
  private avgTaskMs = 1000;
  private readonly helloWaiters: Array<() => void> = [];
  readonly placement: Placement;

  constructor(readonly options: InferencePoolOptions) {
    this.placement = options.placement ?? 'spread';
    const channelName = `tabagent-inference-${process.pid}-${++poolCounter}`;
    this.queue = new PriorityTaskQueue(options.queueLimits, options.agingMs);
    this.channel = new BroadcastChannel(channelName);
    this.channel.onmessage = (event) => this.onControl((event as MessageEvent).data as ControlRequest | ControlReply);
    const workerData: WorkerConfig = {
      threads: options.threads,
      contextSize: options.contextSize,
      maxSequences: options.maxSequences,
      contexts: options.contexts ?? 1,
      channel: channelName,
      logLevel: options.logLevel ?? 'warn',
    };
    if (options.batchSize) workerData.batchSize = options.batchSize;
    this.piscina = new Piscina({
      filename: workerFile(),
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: options.maxSequences,
      // a worker runs async decode loops: Atomics.wait between tasks would freeze them
      atomics: 'disabled',
      // a task piscina could not place goes back to the head of its class, keeping FIFO order
      stricterFIFO: true,
      taskQueue: this.queue,
      loadBalancer: (task, workers) => this.place(task as unknown as Task, workers),
      workerData,
      recordTiming: false,
    });
    this.piscina.on('error', (err: unknown) => this.options.log?.error('inference worker error', { err }));
  }

  /** Waits until every worker is up (its module loaded and engine created). */
  async start(): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    while (this.known.size < this.options.workers) {
      if (Date.now() > deadline) throw new TabAgentError('BACKEND_ERROR', `inference workers did not start within ${timeoutMs} ms (${this.known.size} of ${this.options.workers} up)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.helloWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  get workerIds(): number[] {
    return [...this.known];
  }

  /** Loads a model in every worker; resolves with its info once all have it, rejects (and unloads) if any fails. */
  async load(id: string, path: string, onProgress?: (ready: number, total: number) => void): Promise<ModelInfo> {
    this.assertOpen();
    const ref: ModelRef = { id, path, gen: ++this.gen };
    this.models.set(id, ref);
    const op = await this.control({ op: 'load', seq: 0, id, path, gen: ref.gen }, onProgress);
    if (op.errors.length > 0 || !op.info) {
      if (this.models.get(id) === ref) this.models.delete(id);
      await this.control({ op: 'unload', seq: 0, id, gen: ref.gen });
      const e = op.errors[0];
      throw e ? new TabAgentError(e.code, e.message, e.details) : new TabAgentError('BACKEND_ERROR', `no inference worker could load ${id}`);
    }
    return op.info;
  }

  /** Unloads a model from every worker; its running generations end as 'cancelled'. */
  async unload(id: string): Promise<void> {
    const ref = this.models.get(id);
    this.models.delete(id);
    await this.control({ op: 'unload', seq: 0, id, gen: ref?.gen ?? this.gen });
  }

  isLoaded(id: string): boolean {
    return this.models.has(id);
  }

  generate(id: string, input: GenerateInput, params: SamplingParams, opts: GenerateOptions = {}): Promise<GenerateResult> {
    return this.submit('generate', id, (model) => ({ model, input, params }), opts);
  }

  embed(id: string, inputs: string[], opts: CallOptions = {}): Promise<EmbedResult> {
    return this.submit('embed', id, (model) => ({ model, inputs }), opts);
  }

  tokenize(id: string, text: string, opts: CallOptions = {}): Promise<number[]> {
    return this.submit('tokenize', id, (model) => ({ model, text }), opts);
  }

  detokenize(id: string, tokens: number[], opts: CallOptions = {}): Promise<string> {
    return this.submit('detokenize', id, (model) => ({ model, tokens }), opts);
  }

  stats(): PoolStats {
    return {
      workers: this.known.size,
      threads_per_worker: this.options.threads,
      sequences_per_worker: this.options.maxSequences,
      capacity: this.options.workers * this.options.maxSequences,
      running: this.running,
      queued: this.queue.depths(),
      placement: this.placement,
      worker_restarts: this.restarts,
    };
  }

  /** Replaces one worker: its in-flight requests fail with BACKEND_ERROR and piscina starts a new one, which loads every model. */
  async restartWorker(threadId: number): Promise<boolean> {
    const w = this.piscina.threads.find((t) => t.threadId === threadId);
    if (!w) return false;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    this.channel.postMessage({ op: 'retire', target: threadId } satisfies ControlRequest);
    await exited;
    return true;
  }

  /** Cancels what runs, unloads every model (so llama.cpp frees its memory cleanly), then ends the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.live) t.cancel();
    await Promise.all([...this.models.keys()].map((id) => this.unload(id).catch(() => {})));
    // A thread ended while llama.cpp maps or frees a model aborts the whole process: let running loads and unloads
    // (a keep-alive unload the registry already forgot, say) finish first.
    for (const until = Date.now() + 30_000; this.ops.size > 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 10));
    await this.piscina.destroy();
    this.channel.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new TabAgentError('UNAVAILABLE', 'the inference pool is shutting down');
  }

  private submit<R extends TaskRoute>(
    route: R,
    id: string,
    payload: (model: ModelRef) => Omit<TaskPayloads[R], never>,
    opts: GenerateOptions,
  ): Promise<TaskResults[R]> {
    if (this.closed) return Promise.reject(new TabAgentError('UNAVAILABLE', 'the inference pool is shutting down'));
    const model = this.models.get(id);
    if (!model) return Promise.reject(new TabAgentError('MODEL_NOT_LOADED', `model "${id}" is not loaded`, { model: id }));
    const priority = opts.priority ?? 'normal';
    if (!this.queue.accepts(priority)) {
      const ahead = this.queue.size;
      const capacity = this.options.workers * this.options.maxSequences;
      const retry = Math.min(30_000, Math.max(50, Math.ceil((this.avgTaskMs * (ahead + 1)) / capacity)));
      return Promise.reject(
        new TabAgentError('BUSY', `the inference queue for ${priority} requests is full (${this.queue.limits[priority]} waiting); retry later`, {
          priority,
          queued: this.queue.sizeOf(priority),
          limit: this.queue.limits[priority],
          retry_after_ms: retry,
        }),
      );
    }
    const requestId = opts.requestId ?? nextId();
    const env = encodeEnvelope({
      id: nextId(),
      kind: 'request',
      from: 'inference-pool',
      to: 'inference-worker',
      priority,
      traceId: requestId,
      body: { route, payload: payload(model), requestId },
    });
    const streaming = route === 'generate';
    const channel = streaming ? new MessageChannel() : null;
    const qopts: PlacedOptions = { priority, model: id };
    const task: PoolTask & Record<symbol, unknown> = { env, [queueOptionsSymbol]: qopts };
    if (channel) task.port = channel.port2;
    const onText = opts.onText;
    // always listen: a port nobody listens on is never started, and its 'close' (awaited below) never comes
    if (channel) channel.port1.on('message', onText ? (delta: string) => onText(delta) : () => {});
    // the port closes after the worker's last delta: waiting for it keeps deltas ahead of the final reply
    const portClosed = channel ? new Promise<void>((r) => channel.port1.once('close', () => r())) : Promise.resolve();
    let started = false;
    let startedAt = 0;
    let withdrawn = false;
    qopts.onStart = () => {
      started = true;
      startedAt = performance.now();
      this.running++;
      opts.onStart?.();
    };
    const handle = {
      cancel: () => {
        if (!started) {
          const info = this.queue.withdraw((t) => (t as unknown as PiscinaTaskInfo).task === task) as unknown as PiscinaTaskInfo | null;
          if (info) {
            withdrawn = true;
            info.done(new TabAgentError('CANCELLED', 'cancelled while queued'));
            return;
          }
        }
        channel?.port1.postMessage(CANCEL);
      },
    };
    const signal = opts.signal;
    const onAbort = (): void => handle.cancel();
    if (signal?.aborted) return Promise.resolve().then(() => cancelledResult(route) as TaskResults[R]);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.live.add(handle);

    const run = this.piscina.run(task, channel ? { transferList: [channel.port2] } : {}) as Promise<TaskReply<TaskResults[R]>>;
    return run
      .then(
        async (reply) => {
          await portClosed;
          if (!reply.ok) throw new TabAgentError(reply.error.code, reply.error.message, reply.error.details);
          return reply.result;
        },
        (err: unknown) => {
          channel?.port1.close();
          if (withdrawn) return cancelledResult(route) as TaskResults[R];
          if (err instanceof TabAgentError) throw err;
          throw new TabAgentError('BACKEND_ERROR', `the inference worker running this request stopped (${(err as Error)?.message ?? String(err)}); a new worker replaces it`, {
            model: id,
          });
        },
      )
      .finally(() => {
        signal?.removeEventListener('abort', onAbort);
        this.live.delete(handle);
        if (started) {
          this.running--;
          if (route === 'generate') this.avgTaskMs = this.avgTaskMs * 0.9 + (performance.now() - startedAt) * 0.1;
          this.release(qopts);
        }
      });
  }

  /** piscina's load balancer: picks a worker with a free sequence for the task, or null to leave it queued. */
  private place(task: Task, workers: readonly { id: number; currentUsage: number; terminating: boolean; destroyed: boolean }[]) {
    const opts = taskOptions(task) as PlacedOptions;
    const cap = this.options.maxSequences;
    let best: (typeof workers)[number] | null = null;
    let bestScore = -Infinity;
    for (const w of workers) {
      if (w.terminating || w.destroyed || w.currentUsage >= cap) continue;
      const same = opts.model ? (this.perWorker.get(w.id)?.get(opts.model) ?? 0) : 0;
      // spread: fewest tasks first; pack: most tasks of this model first, then fewest tasks
      const score = this.placement === 'pack' ? same * (cap + 1) - w.currentUsage : -w.currentUsage;
      if (score > bestScore) {
        best = w;
        bestScore = score;
      }
    }
    if (!best) return null;
    opts.workerId = best.id;
    if (opts.model) {
      let m = this.perWorker.get(best.id);
      if (!m) this.perWorker.set(best.id, (m = new Map()));
      m.set(opts.model, (m.get(opts.model) ?? 0) + 1);
    }
    opts.onStart?.();
    return best as never;
  }

  private release(opts: QueuedTaskOptions): void {
    if (opts.workerId === undefined || !opts.model) return;
    const m = this.perWorker.get(opts.workerId);
    const n = (m?.get(opts.model) ?? 0) - 1;
    if (n > 0) m!.set(opts.model, n);
    else m?.delete(opts.model);
  }

  private control(req: Extract<ControlRequest, { op: 'load' | 'unload' }>, onProgress?: (ready: number, total: number) => void): Promise<ControlOp> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      const op: ControlOp = { kind: req.op, id: req.id, waiting: new Set(this.known), errors: [], done: 0, resolve: () => resolve(op) };
      if (onProgress) op.onProgress = onProgress;
      this.ops.set(seq, op);
      this.channel.postMessage({ ...req, seq });
      this.settle(seq, op);
    });
  }

  private settle(seq: number, op: ControlOp): void {
    if (op.waiting.size > 0) return;
    // a load waits for at least one worker: if every worker died meanwhile, their replacements report in
    if (op.kind === 'load' && op.done === 0 && !this.closed) return;
    this.ops.delete(seq);
    op.resolve();
  }

  private onControl(msg: ControlRequest | ControlReply): void {
    if (msg.op === 'hello') {
      if (this.known.has(msg.threadId)) return;
      this.known.add(msg.threadId);
      // piscina emits workerDestroy only for workers it ends itself: watch the thread for any exit
      this.piscina.threads.find((w) => w.threadId === msg.threadId)?.once('exit', () => this.onWorkerGone(msg.threadId));
      for (const w of this.helloWaiters.splice(0)) w();
      // a new worker (a replacement) loads what the others have; pending loads wait for it too
      for (const [seq, op] of this.ops) {
        if (op.kind !== 'load') continue;
        const ref = this.models.get(op.id);
        if (!ref) continue;
        op.waiting.add(msg.threadId);
        this.channel.postMessage({ op: 'load', seq, id: ref.id, path: ref.path, gen: ref.gen, target: msg.threadId } satisfies ControlRequest);
      }
      const pending = new Set([...this.ops.values()].filter((o) => o.kind === 'load').map((o) => o.id));
      for (const ref of this.models.values()) {
        if (pending.has(ref.id)) continue;
        const seq = ++this.seq;
        const op: ControlOp = { kind: 'load', id: ref.id, waiting: new Set([msg.threadId]), errors: [], done: 0, resolve: () => {} };
        op.resolve = () => {
          if (op.errors.length) this.options.log?.error('a replacement worker could not load a model', { model: ref.id, error: op.errors[0] });
        };
        this.ops.set(seq, op);
        this.channel.postMessage({ op: 'load', seq, id: ref.id, path: ref.path, gen: ref.gen, target: msg.threadId } satisfies ControlRequest);
      }
      return;
    }
    if (msg.op !== 'done') return;
    const op = this.ops.get(msg.seq);
    if (!op || !op.waiting.delete(msg.threadId)) return;
    op.done++;
    if (msg.ok) {
      if (msg.info) op.info ??= msg.info;
    } else op.errors.push(msg.error);
    op.onProgress?.(op.done, op.done + op.waiting.size);
    this.settle(msg.seq, op);
  }

  private onWorkerGone(threadId: number): void {
    // piscina starts a replacement for any worker that ends before the pool closes
    if (!this.closed && this.known.has(threadId)) this.restarts++;
    this.known.delete(threadId);
    this.perWorker.delete(threadId);
    for (const [seq, op] of this.ops) {
      if (op.waiting.delete(threadId)) this.settle(seq, op);
    }
  }
}

function cancelledResult(route: TaskRoute): unknown {
  if (route !== 'generate') throw new TabAgentError('CANCELLED', 'the request was cancelled');
  const r: GenerateResult = { text: '', finish_reason: 'cancelled', usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, ttft_ms: 0 };
  return r;
}

