/**
 * InferenceEngine: runs GGUF models with node-llama-cpp inside one worker thread, batching concurrent generations.
 *
 * API (all the pool and model registry need; no piscina or bus here):
 *   new InferenceEngine({threads, contextSize?, maxSequences?, contexts?, batchSize?, log?})
 *   load(id, path) -> ModelInfo          memory-mapped; idempotent for the same id and path
 *   unload(id), loaded(), info(id)
 *   generate(id, input, params, onText, signal) -> GenerateResult   concurrent calls share decode steps
 *   embed(id, inputs) -> {vectors, tokens}, tokenize(id, text) -> number[], detokenize(id, tokens) -> string
 *   dispose()
 *
 * Why it drives llama.cpp itself instead of LlamaCompletion / sequence.evaluate(): node-llama-cpp dispatches a batch on
 * the next event-loop turn after any sequence queues a token, so sequences that are still sampling miss it and
 * batches run part-full (about 3 of 4 streams); it also re-applies the sampler configuration (allocating the
 * repeat-penalty history) and takes two locks per token. Here each context has one loop: every step decodes one token
 * for every active sequence (plus prompt chunks up to the batch size) in a single llama_decode, then samples all
 * sequences in parallel with samplers configured once per request. That uses node-llama-cpp's native binding
 * (`context._ctx`, `AddonSampler`) directly; `assertBindings` checks those exist at load so a node-llama-cpp upgrade
 * that changes them fails loudly with BACKEND_ERROR, not with wrong output.
 *
 * Policies: a prompt longer than the context (contextSize - 1 tokens per sequence) is rejected with BAD_REQUEST
 * naming both sizes; generation stops with finish_reason 'length' at max_tokens or when the sequence's context is
 * full. Chat prompts use the model's own template through node-llama-cpp's resolveChatWrapper; a GGUF without a
 * template gets node-llama-cpp's fallback for its architecture/name (GeneralChatWrapper when nothing matches).
 */
import {
  getLlama,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  LlamaText,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { TabAgentError } from '../../protocol/errors.js';
import type { Log } from '../logger.js';
import { readGguf, summariseGguf } from '../gguf/reader.js';
import type { ChatMessage, EmbedResult, FinishReason, GenerateInput, GenerateResult, ModelInfo, SamplingParams } from './types.js';

export interface InferenceEngineOptions {
  /** CPU threads per context. Oversubscribing cores is catastrophic for llama.cpp: keep threads x contexts <= cores. */
  threads: number;
  /** Tokens of context per sequence; default min(model's training context, 4096). */
  contextSize?: number;
  /** Concurrent generations per context; more wait in a queue. Default 8. */
  maxSequences?: number;
  /** Contexts per model, each with its own decode loop (they decode in parallel on separate cores). Default 1. */
  contexts?: number;
  /** Most tokens one decode step carries (prompt chunks fill what generating sequences leave). Default 512. */
  batchSize?: number;
  /** GPU offload: false (default) keeps everything on the CPU. */
  gpu?: false | 'auto';
  log?: Log;
}

/** llama.cpp's usual defaults, used where a request and the server defaults leave a field unset. */
export const engineSamplingDefaults = {
  temperature: 0.8,
  top_k: 40,
  top_p: 0.95,
  min_p: 0.05,
  repeat_penalty: 1.0,
} as const;

/** The parts of node-llama-cpp's native binding the decode loop uses (node-llama-cpp 3.x, AddonTypes.d.ts). */
interface NativeContext {
  initBatch(size: number): void;
  addToBatch(sequenceId: number, firstTokenSequenceIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number>;
  disposeSequence(sequenceId: number): void;
}
interface NativeSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}
type NativeSamplerClass = new (model: unknown) => NativeSampler;

const EMPTY = new Uint32Array(0);
const MAX_CACHED_GRAMMARS = 32;
/** Byte-fallback tokens can split a UTF-8 character: hold text back while it ends in a replacement char, this long. */
const MAX_HELD_TOKENS = 4;

interface Job {
  prompt: Token[];
  /** Next prompt token to feed. */
  fed: number;
  pos: number;
  maxTokens: number;
  sampler: NativeSampler;
  stopStrings: string[];
  stopTokens: Set<number>;
  onText: (delta: string) => void;
  signal: AbortSignal;
  started: number;
  ttft: number;
  completion: number;
  text: string;
  /** Text produced but not yet emitted: it might be the start of a stop string. */
  emitted: number;
  held: Token[];
  lastToken: Token;
  finish: FinishReason | null;
  slot: number;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
}

/**
 * How many generating sequences share one decode. Batching is not free on CPU: measured with node-llama-cpp 3.22's
 * prebuilt llama.cpp, 1 thread, the reference model, decoding 2 tokens costs 2.3x (F32) to 3.5x (Q8_0) one token, so
 * batches of 2-6 are slower per token than one-at-a-time and only large batches win (Q8_0 breaks even near 8).
 * The policy learns the decode time for each batch size it tries (EWMA over the real decodes of this context, on
 * this machine) and picks the size with the lowest time per token, preferring bigger batches on near-ties; it
 * re-measures other sizes now and then because the curve moves with load and context length.
 */
class BatchPolicy {
  private readonly ms: Float64Array;
  private readonly seen: Uint32Array;
  private steps = 0;

  constructor(private readonly max: number) {
    this.ms = new Float64Array(max + 1);
    this.seen = new Uint32Array(max + 1);
  }

  private static readonly EXPLORE_EVERY = 64;
  private static readonly TIE = 1.05;

  choose(ready: number): number {
    if (ready <= 1) return ready;
    this.steps++;
    const candidates = candidateSizes(ready);
    for (const n of candidates) if (this.seen[n] < 3) return n;
    if (this.steps % BatchPolicy.EXPLORE_EVERY === 0) return candidates[(this.steps / BatchPolicy.EXPLORE_EVERY) % candidates.length];
    let best = Infinity;
    for (const n of candidates) best = Math.min(best, this.ms[n] / n);
    let pick = 1;
    for (const n of candidates) if (this.ms[n] / n <= best * BatchPolicy.TIE) pick = Math.max(pick, n);
    return pick;
  }

  record(n: number, ms: number): void {
    if (n < 1 || n > this.max) return;
    this.ms[n] = this.seen[n] === 0 ? ms : this.ms[n] * 0.8 + ms * 0.2;
    this.seen[n]++;
  }
}

/** 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... up to `ready`, and `ready` itself. */
function candidateSizes(ready: number): number[] {
  const out: number[] = [];
  for (let p = 1; p <= ready; p *= 2) {
    out.push(p);
    const mid = p + p / 2;
    if (p >= 2 && mid <= ready) out.push(mid);
  }
  if (out.at(-1) !== ready) out.push(ready);
  return out;
}

/** One LlamaContext with `maxSequences` slots and one decode loop. */
class ContextRunner {
  readonly native: NativeContext;
  private readonly free: number[] = [];
  private readonly active: Job[] = [];
  private readonly waiting: Job[] = [];
  private running = false;
  private batchLogits: number[] = [];
  private rotation = 0;
  private readonly policy: BatchPolicy;

  constructor(
    readonly context: LlamaContext,
    private readonly owner: LoadedModel,
    slots: number,
    private readonly batchSize: number,
  ) {
    this.native = (context as unknown as { _ctx: NativeContext })._ctx;
    for (let i = 0; i < slots; i++) this.free.push(i);
    this.policy = new BatchPolicy(slots);
  }

  get load(): number {
    return this.active.length + this.waiting.length;
  }

  submit(job: Job): void {
    this.waiting.push(job);
    this.admit();
    if (!this.running) void this.loop();
  }

  /** Drops a job that is still queued (its slot never taken); active jobs are finished by the loop. */
  withdraw(job: Job): boolean {
    const i = this.waiting.indexOf(job);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  private admit(): void {
    while (this.free.length > 0 && this.waiting.length > 0) {
      const job = this.waiting.shift()!;
      job.slot = this.free.pop()!;
      this.active.push(job);
    }
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.active.length > 0) {
        await this.step();
        this.admit();
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * One decode. With a prompt waiting: every generating sequence's next token plus prompt chunks up to the batch
   * size (prompts gain most from batching). Otherwise: the `BatchPolicy`'s choice of how many generating sequences
   * share this decode, taken round-robin so all progress evenly.
   */
  private async step(): Promise<void> {
    const jobs = this.active;
    for (const job of jobs) if (job.signal.aborted && job.finish === null) job.finish = 'cancelled';
    this.retireFinished();
    if (jobs.length === 0) return;

    let budget = this.batchSize;
    const sampling: Job[] = [];
    const counts: number[] = [];
    let generating = 0;
    let prompting = false;
    for (const job of jobs) {
      if (job.fed < job.prompt.length) prompting = true;
      else generating++;
    }
    const take = prompting ? generating : this.policy.choose(generating);
    let skip = prompting || generating === 0 ? 0 : this.rotation++ % generating;
    let taken = 0;
    for (const job of jobs) {
      if (job.fed < job.prompt.length) {
        counts.push(0);
        continue;
      }
      if (skip > 0) {
        skip--;
        counts.push(0);
        continue;
      }
      counts.push(taken < take ? 1 : 0);
      if (taken < take) budget--;
      taken++;
    }
    // round-robin wrap-around: the sequences skipped at the front fill what is left of `take`
    for (let i = 0; i < jobs.length && taken < take; i++) {
      if (counts[i] === 0 && jobs[i].fed >= jobs[i].prompt.length) {
        counts[i] = 1;
        budget--;
        taken++;
      }
    }
    for (let i = 0; i < jobs.length && budget > 0; i++) {
      const job = jobs[i];
      if (job.fed >= job.prompt.length) continue;
      const n = Math.min(budget, job.prompt.length - job.fed);
      counts[i] = n;
      budget -= n;
    }
    let total = 0;
    for (const n of counts) total += n;
    if (total === 0) return;

    const native = this.native;
    native.initBatch(total);
    this.batchLogits.length = 0;
    for (let i = 0; i < jobs.length; i++) {
      const n = counts[i];
      if (n === 0) continue;
      const job = jobs[i];
      if (job.fed < job.prompt.length) {
        const tokens = Uint32Array.from(job.prompt.slice(job.fed, job.fed + n));
        const last = job.fed + n === job.prompt.length;
        const idx = native.addToBatch(job.slot, job.pos, tokens, last ? Uint32Array.of(n - 1) : EMPTY);
        job.fed += n;
        job.pos += n;
        if (last) {
          sampling.push(job);
          this.batchLogits.push(idx[0]);
        }
      } else {
        const idx = native.addToBatch(job.slot, job.pos, Uint32Array.of(job.lastToken), Uint32Array.of(0));
        job.pos += 1;
        sampling.push(job);
        this.batchLogits.push(idx[0]);
      }
    }
    const t0 = performance.now();
    try {
      await native.decodeBatch();
    } catch (err) {
      for (const job of jobs) this.fail(job, err);
      this.retireFinished();
      return;
    }
    const logits = this.batchLogits;
    const tokens = await Promise.all(
      sampling.map((job, i) =>
        native.sampleToken(logits[i], job.sampler).catch((err: unknown) => {
          this.fail(job, err);
          return -1;
        }),
      ),
    );
    // the policy learns the whole step (decode, sampling, hand-over), not just llama_decode
    if (!prompting) this.policy.record(total, performance.now() - t0);
    for (let i = 0; i < sampling.length; i++) {
      const job = sampling[i];
      if (job.finish !== null || tokens[i] < 0) continue;
      if (job.signal.aborted) job.finish = 'cancelled';
      else this.owner.accept(job, tokens[i] as Token);
    }
    this.retireFinished();
  }

  private fail(job: Job, err: unknown): void {
    if (job.finish !== null) return;
    job.finish = 'stop';
    job.reject(new TabAgentError('BACKEND_ERROR', `generation failed: ${(err as Error)?.message ?? String(err)}`));
    job.resolve = () => {};
  }

  /** Finished jobs leave: their KV cells are cleared and their slot is reused at once. */
  private retireFinished(): void {
    const jobs = this.active;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i];
      if (job.finish === null) continue;
      jobs.splice(i--, 1);
      this.native.disposeSequence(job.slot);
      this.free.push(job.slot);
      this.owner.complete(job);
    }
  }

  /** Cancels everything (unload): queued jobs resolve at once, active ones at the next step. */
  cancelAll(): void {
    for (const job of this.waiting.splice(0)) {
      job.finish = 'cancelled';
      this.owner.complete(job);
    }
    for (const job of this.active) if (job.finish === null) job.finish = 'cancelled';
  }

  async idle(): Promise<void> {
    while (this.running) await new Promise((r) => setTimeout(r, 1));
  }
}

/** A loaded model: its contexts, chat wrapper, grammars and (lazily) an embedding context. */
class LoadedModel {
  readonly runners: ContextRunner[] = [];
  private embedding: Promise<LlamaEmbeddingContext> | null = null;
  private embedQueue: Promise<unknown> = Promise.resolve();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  readonly chatWrapper: ChatWrapper;
  private readonly Sampler: NativeSamplerClass;

  constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly info: ModelInfo,
    readonly contextSize: number,
    readonly vocabSize: number,
    private readonly threads: number,
  ) {
    this.chatWrapper = resolveChatWrapper(model);
    this.Sampler = (llama as unknown as { _bindings: { AddonSampler: NativeSamplerClass } })._bindings.AddonSampler;
  }

  get nativeModel(): unknown {
    return (this.model as unknown as { _model: unknown })._model;
  }

  newSampler(): NativeSampler {
    return new this.Sampler(this.nativeModel);
  }

  grammarFor(params: SamplingParams): Promise<LlamaGrammar> | null {
    if (params.json_schema) {
      const key = JSON.stringify(params.json_schema);
      let g = this.grammars.get(key);
      if (!g) {
        g = this.llama.createGrammarForJsonSchema(params.json_schema as never) as Promise<LlamaGrammar>;
        g.catch(() => this.grammars.delete(key));
        if (this.grammars.size >= MAX_CACHED_GRAMMARS) this.grammars.delete(this.grammars.keys().next().value!);
        this.grammars.set(key, g);
      }
      return g;
    }
    if (params.json_object) {
      let g = this.grammars.get('json');
      if (!g) {
        g = this.llama.getGrammarFor('json');
        this.grammars.set('json', g);
      }
      return g;
    }
    return null;
  }

  /** Takes one sampled token: stop checks, incremental detokenization, streaming of text that is safe to show. */
  accept(job: Job, token: Token): void {
    if (job.completion === 0) job.ttft = performance.now() - job.started;
    if (this.model.isEogToken(token) || job.stopTokens.has(token)) {
      job.finish = 'stop';
      this.flush(job, true);
      return;
    }
    job.completion++;
    job.lastToken = token;
    job.held.push(token);
    const piece = this.model.detokenize(job.held, false);
    if (piece.endsWith('\uFFFD') && job.held.length < MAX_HELD_TOKENS) {
      if (job.completion >= job.maxTokens || job.pos >= this.contextSize - 1) this.finishLength(job, piece);
      return;
    }
    job.held.length = 0;
    job.text += piece;
    if (this.checkStops(job)) return;
    if (job.completion >= job.maxTokens || job.pos >= this.contextSize - 1) {
      job.finish = 'length';
      this.flush(job, true);
      return;
    }
    this.flush(job, false);
  }

  private finishLength(job: Job, piece: string): void {
    job.held.length = 0;
    job.text += piece;
    if (this.checkStops(job)) return;
    job.finish = 'length';
    this.flush(job, true);
  }

  /** A stop string ends the text just before it; the stop string itself is never shown. */
  private checkStops(job: Job): boolean {
    if (job.stopStrings.length === 0) return false;
    const from = Math.max(0, job.emitted - longest(job.stopStrings));
    let cut = -1;
    for (const s of job.stopStrings) {
      const at = job.text.indexOf(s, from);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut < 0) return false;
    job.text = job.text.slice(0, cut);
    job.finish = 'stop';
    this.flush(job, true);
    return true;
  }

  /** Emits what cannot be the beginning of a stop string (everything, when the job is over). */
  private flush(job: Job, final: boolean): void {
    let safe = job.text.length;
    if (!final) {
      for (const s of job.stopStrings) {
        for (let k = Math.min(s.length - 1, job.text.length); k > 0; k--) {
          if (job.text.endsWith(s.slice(0, k))) {
            safe = Math.min(safe, job.text.length - k);
            break;
          }
        }
      }
    }
    if (safe > job.emitted) {
      const delta = job.text.slice(job.emitted, safe);
      job.emitted = safe;
      try {
        job.onText(delta);
      } catch {
        // a failing consumer must not break the shared decode loop
      }
    }
  }

  complete(job: Job): void {
    job.signal.removeEventListener('abort', job.onAbort);
    job.sampler.dispose();
    if (job.finish === 'cancelled') this.flush(job, true);
    job.resolve({
      text: job.text,
      finish_reason: job.finish ?? 'stop',
      usage: {
        prompt_tokens: job.prompt.length,
        completion_tokens: job.completion,
        total_tokens: job.prompt.length + job.completion,
      },
      ttft_ms: job.ttft,
    });
  }

  runner(): ContextRunner {
    let best = this.runners[0];
    for (const r of this.runners) if (r.load < best.load) best = r;
    return best;
  }

  embed(inputs: string[]): Promise<EmbedResult> {
    const run = async (): Promise<EmbedResult> => {
      this.embedding ??= this.model.createEmbeddingContext({ contextSize: this.contextSize, threads: this.threads });
      const ctx = await this.embedding;
      const vectors: number[][] = [];
      let counted = 0;
      for (const text of inputs) {
        const tokens = this.model.tokenize(text);
        counted += tokens.length;
        if (tokens.length > this.contextSize) {
          throw new TabAgentError(
            'BAD_REQUEST',
            `input is ${tokens.length} tokens but the embedding context holds ${this.contextSize}`,
            { input_tokens: tokens.length, context_size: this.contextSize },
          );
        }
        vectors.push([...(await ctx.getEmbeddingFor(tokens)).vector]);
      }
      return { vectors, tokens: counted };
    };
    const p = this.embedQueue.then(run, run);
    this.embedQueue = p.catch(() => undefined);
    return p;
  }

  async dispose(): Promise<void> {
    for (const r of this.runners) r.cancelAll();
    await Promise.all(this.runners.map((r) => r.idle()));
    if (this.embedding) await (await this.embedding.catch(() => null))?.dispose();
    await Promise.all(this.runners.map((r) => r.context.dispose()));
    await this.model.dispose();
  }
}

function longest(strings: string[]): number {
  let n = 0;
  for (const s of strings) n = Math.max(n, s.length);
  return n;
}

function toChatHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of messages) {
    if (m.role === 'system') history.push({ type: 'system', text: m.content });
    else if (m.role === 'assistant') history.push({ type: 'model', response: [m.content] });
    else if (m.role === 'user') history.push({ type: 'user', text: m.content });
    // tool and function results have no slot in node-llama-cpp's history: they reach the model as user turns
    else history.push({ type: 'user', text: `[${m.role}${m.name ? ` ${m.name}` : ''}] ${m.content}` });
  }
  if (history.at(-1)?.type !== 'model') history.push({ type: 'model', response: [] });
  return history;
}

function badParam(field: string, why: string): TabAgentError {
  return new TabAgentError('VALIDATION_ERROR', `${field} ${why}`, { field });
}

function validateParams(p: SamplingParams): void {
  const num = (field: keyof SamplingParams, min: number, max: number, integer = false) => {
    const v = p[field];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw badParam(field, `must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max} (got ${JSON.stringify(v)})`);
    }
  };
  num('max_tokens', 1, 1 << 24, true);
  num('temperature', 0, 100);
  num('top_p', 0, 1);
  num('top_k', 0, 1 << 20, true);
  num('min_p', 0, 1);
  num('seed', 0, 2 ** 32 - 1, true);
  num('repeat_penalty', 0, 100);
  if (p.stop !== undefined && (!Array.isArray(p.stop) || p.stop.some((s) => typeof s !== 'string' || s.length === 0))) {
    throw badParam('stop', 'must be a list of non-empty strings');
  }
}

export class InferenceEngine {
  private llama: Promise<Llama> | null = null;
  private readonly models = new Map<string, Promise<LoadedModel>>();
  private readonly opts: Required<Omit<InferenceEngineOptions, 'log' | 'contextSize'>> & { contextSize?: number };
  private readonly log?: Log;

  constructor(options: InferenceEngineOptions) {
    this.opts = {
      threads: Math.max(1, Math.floor(options.threads)),
      contextSize: options.contextSize,
      maxSequences: Math.max(1, options.maxSequences ?? 8),
      contexts: Math.max(1, options.contexts ?? 1),
      batchSize: Math.max(16, options.batchSize ?? 512),
      gpu: options.gpu ?? false,
    };
    this.log = options.log;
  }

  private getLlama(): Promise<Llama> {
    this.llama ??= getLlama({
      gpu: this.opts.gpu,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (!text) return;
        if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) this.log?.error('llama.cpp', { message: text });
        else this.log?.debug('llama.cpp', { message: text });
      },
    });
    return this.llama;
  }

  loaded(): string[] {
    return [...this.models.keys()];
  }

  async info(id: string): Promise<ModelInfo> {
    return (await this.get(id)).info;
  }

  /** Loads a GGUF (memory-mapped). Loading the same id again returns the loaded model's info. */
  load(id: string, path: string): Promise<ModelInfo> {
    const existing = this.models.get(id);
    if (existing) return existing.then((m) => m.info);
    const loading = this.open(id, path);
    this.models.set(id, loading);
    loading.catch(() => this.models.delete(id));
    return loading.then((m) => m.info);
  }

  private async open(id: string, path: string): Promise<LoadedModel> {
    // Our own header check first: a truncated or corrupt file gets a precise error, and never reaches llama.cpp.
    const file = await readGguf(path).catch((err: unknown) => {
      if (err instanceof TabAgentError) throw err;
      throw new TabAgentError('BACKEND_ERROR', `cannot load ${path}: ${(err as Error).message}`, { path });
    });
    const summary = summariseGguf(file);
    const llama = await this.getLlama();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: path, useMmap: true });
    } catch (err) {
      throw new TabAgentError('BACKEND_ERROR', `llama.cpp could not load ${path}: ${(err as Error).message}`, { path });
    }
    try {
      assertBindings(llama);
      const contextSize = Math.max(64, Math.min(this.opts.contextSize ?? 4096, model.trainContextSize || 4096));
      const info: ModelInfo = {
        id,
        path,
        architecture: summary.architecture,
        parameters: summary.parameters,
        context_length: summary.context_length,
        embedding_length: summary.embedding_length ?? model.embeddingVectorSize,
        quantization: summary.quantization,
        file_size: summary.file_size,
        has_chat_template: summary.has_chat_template,
      };
      const loadedModel = new LoadedModel(llama, model, info, contextSize, summary.vocab_size ?? 0, this.opts.threads);
      for (let i = 0; i < this.opts.contexts; i++) {
        const context = await model.createContext({
          contextSize,
          sequences: this.opts.maxSequences,
          threads: this.opts.threads,
          batchSize: this.opts.batchSize,
          flashAttention: true,
        });
        loadedModel.runners.push(new ContextRunner(context, loadedModel, this.opts.maxSequences, this.opts.batchSize));
      }
      // 'prebuilt' batches at about half the speed of a local build (`tabagent build-llama`, docs/tuning.md)
      this.log?.info('model loaded', { model: id, path, context_size: contextSize, chat_wrapper: loadedModel.chatWrapper.wrapperName, llama_build: llama.buildType });
      return loadedModel;
    } catch (err) {
      await model.dispose();
      if (err instanceof TabAgentError) throw err;
      throw new TabAgentError('BACKEND_ERROR', `cannot create a context for ${path}: ${(err as Error).message}`, { path });
    }
  }

  private async get(id: string): Promise<LoadedModel> {
    const m = this.models.get(id);
    if (!m) throw new TabAgentError('MODEL_NOT_LOADED', `model "${id}" is not loaded`, { model: id, loaded: this.loaded() });
    return m;
  }

  /** Unloads a model: its running generations resolve as 'cancelled', then its memory is released. */
  async unload(id: string): Promise<boolean> {
    const m = this.models.get(id);
    if (!m) return false;
    this.models.delete(id);
    const loaded = await m.catch(() => null);
    await loaded?.dispose();
    return true;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.loaded().map((id) => this.unload(id)));
    const llama = await this.llama?.catch(() => null);
    await llama?.dispose();
    this.llama = null;
  }

  /** Generates text; calls onText with each new piece as it becomes final. Resolves 'cancelled' when signal aborts. */
  async generate(
    id: string,
    input: GenerateInput,
    params: SamplingParams,
    onText: (delta: string) => void,
    signal: AbortSignal,
  ): Promise<GenerateResult> {
    const started = performance.now();
    validateParams(params);
    const m = await this.get(id);
    const { tokens: prompt, stopStrings, stopTokens } = this.prompt(m, input);
    stopStrings.push(...(params.stop ?? []));
    const room = m.contextSize - 1 - prompt.length;
    if (room < 1) {
      throw new TabAgentError(
        'BAD_REQUEST',
        `the prompt is ${prompt.length} tokens but the model's context holds ${m.contextSize} per sequence ` +
          `(at most ${m.contextSize - 2} prompt tokens leave room for an answer)`,
        { prompt_tokens: prompt.length, context_size: m.contextSize },
      );
    }
    const grammar = await m.grammarFor(params)?.catch((err: unknown) => {
      throw badParam('response_format', `cannot be turned into a grammar: ${(err as Error).message}`);
    });
    const sampler = m.newSampler();
    const d = engineSamplingDefaults;
    const temperature = params.temperature ?? d.temperature;
    const repeatPenalty = params.repeat_penalty ?? d.repeat_penalty;
    sampler.applyConfig({
      temperature,
      topK: params.top_k ?? d.top_k,
      topP: params.top_p ?? d.top_p,
      minP: params.min_p ?? d.min_p,
      seed: params.seed ?? Math.floor(Math.random() * 2 ** 32),
      ...(repeatPenalty !== 1
        ? { repeatPenalty, repeatPenaltyMaxTokens: 64, repeatPenaltyTokens: new Uint32Array(0) }
        : {}),
      ...(grammar
        ? {
            grammarEvaluationState: (
              new LlamaGrammarEvaluationState({ model: m.model, grammar }) as unknown as { _state: unknown }
            )._state,
          }
        : {}),
    });
    return new Promise<GenerateResult>((resolve, reject) => {
      const runner = m.runner();
      const job: Job = {
        prompt,
        fed: 0,
        pos: 0,
        maxTokens: Math.min(params.max_tokens ?? room, room),
        sampler,
        stopStrings,
        stopTokens,
        onText,
        signal,
        started,
        ttft: 0,
        completion: 0,
        text: '',
        emitted: 0,
        held: [],
        lastToken: 0 as Token,
        finish: null,
        slot: -1,
        resolve,
        reject,
        onAbort: () => {
          if (runner.withdraw(job)) {
            job.finish = 'cancelled';
            m.complete(job);
          }
          // an active job is finished by its runner before the next decode
        },
      };
      if (signal.aborted) {
        job.finish = 'cancelled';
        m.complete(job);
        return;
      }
      signal.addEventListener('abort', job.onAbort, { once: true });
      runner.submit(job);
    });
  }

  private prompt(m: LoadedModel, input: GenerateInput): { tokens: Token[]; stopStrings: string[]; stopTokens: Set<number> } {
    const model = m.model;
    if (input.kind === 'completion') {
      const tokens = model.tokenize(input.prompt, false);
      if (model.tokens.shouldPrependBosToken && model.tokens.bos !== null && tokens[0] !== model.tokens.bos) {
        tokens.unshift(model.tokens.bos);
      }
      return { tokens, stopStrings: [], stopTokens: new Set() };
    }
    if (!Array.isArray(input.messages) || input.messages.length === 0) throw badParam('messages', 'must not be empty');
    const state = m.chatWrapper.generateContextState({ chatHistory: toChatHistory(input.messages) });
    const tokens = state.contextText.tokenize(model.tokenizer);
    const stopStrings: string[] = [];
    const stopTokens = new Set<number>();
    for (const trigger of state.stopGenerationTriggers) {
      const text = LlamaText(trigger);
      if (text.values.every((v) => typeof v === 'string')) {
        const s = text.values.join('');
        if (s) stopStrings.push(s);
      } else {
        const ids = text.tokenize(model.tokenizer, 'trimLeadingSpace');
        if (ids.length === 1) stopTokens.add(ids[0]);
      }
    }
    return { tokens, stopStrings, stopTokens };
  }

  async embed(id: string, inputs: string[]): Promise<EmbedResult> {
    if (!Array.isArray(inputs) || inputs.some((s) => typeof s !== 'string')) throw badParam('input', 'must be a string or a list of strings');
    return (await this.get(id)).embed(inputs);
  }

  async tokenize(id: string, text: string): Promise<number[]> {
    if (typeof text !== 'string') throw badParam('text', 'must be a string');
    return [...(await this.get(id)).model.tokenize(text, false)];
  }

  async detokenize(id: string, tokens: number[]): Promise<string> {
    const m = await this.get(id);
    // a GGUF without a token list cannot have loaded, so vocabSize is known; ids past it would crash llama.cpp
    const vocab = m.vocabSize;
    if (!Array.isArray(tokens) || tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab)) {
      throw badParam('tokens', `must be a list of token ids between 0 and ${vocab - 1}`);
    }
    return m.model.detokenize(tokens as Token[], false);
  }
}

function assertBindings(llama: Llama): void {
  const bindings = (llama as unknown as { _bindings?: { AddonSampler?: unknown; AddonContext?: { prototype?: object } } })._bindings;
  const proto = bindings?.AddonContext?.prototype as Record<string, unknown> | undefined;
  const ok =
    typeof bindings?.AddonSampler === 'function' &&
    ['initBatch', 'addToBatch', 'decodeBatch', 'sampleToken', 'disposeSequence'].every((k) => typeof proto?.[k] === 'function');
  if (!ok) {
    throw new TabAgentError('BACKEND_ERROR', 'this node-llama-cpp version lacks the native batch API the engine drives (written for 3.22)');
  }
}
