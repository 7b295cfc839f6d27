/** The model registry actor: the one owner of load and unload decisions; serves the inference routes through the worker pool. */
import os from 'node:os';
import { Addresses } from '../bus/addresses.js';
import type { Bus, RequestContext } from '../bus/bus.js';
import { TabAgentError, toTabAgentError } from '../protocol/errors.js';
import type { PayloadOf } from '../protocol/route.js';
import type * as I from '../protocol/routes/inference.js';
import type * as M from '../protocol/routes/models.js';
import type { Config } from '../runtime/config.js';
import { readGgufMetadata, type GgufModelSummary } from '../runtime/gguf/index.js';
import type { ChatMessage, GenerateResult, ModelInfo, SamplingParams } from '../runtime/inference/types.js';
import type { Log } from '../runtime/logger.js';
import { ModelCatalog } from '../runtime/models/catalog.js';
import { contextTokens, estimateModelBytes } from '../runtime/models/memory.js';
import { ModelStats } from '../runtime/models/stats.js';
import type { InferencePool } from '../runtime/pool/pool.js';
import { fitHistoryToContext } from '../runtime/storage/context-fit.js';
import { Actor } from './actor.js';

/** What the registry needs of the pool; tests may inject another implementation. */
export type InferenceBackend = Pick<InferencePool, 'start' | 'load' | 'unload' | 'generate' | 'embed' | 'tokenize' | 'detokenize' | 'stats' | 'close'> & {
  readonly options: { workers: number; maxSequences: number; contexts?: number };
};

export interface ModelRegistryOptions {
  inference: Config['inference'];
  modelsDir: string;
  /** `--model` / `models` entries: added to the catalogue and loaded at start-up. */
  models: readonly string[];
  createBackend: () => InferenceBackend;
  /** Bytes that may still be allocated (default os.freemem()). */
  freeMemory?: () => number;
}

interface LoadedModel {
  id: string;
  path: string;
  info: ModelInfo;
  meta: GgufModelSummary;
  loadedAt: number;
  lastUsed: number;
  inFlight: number;
  memoryBytes: number;
  idleTimer: NodeJS.Timeout | undefined;
}

type ChatPayload = PayloadOf<typeof I.chat>;
type GeneratePayload = PayloadOf<typeof I.generate>;
type SamplingPayload = PayloadOf<typeof I.generate> | ChatPayload;

/** Tokens a message costs beyond its text in a chat template (role markers, separators). */
const TEMPLATE_TOKENS_PER_MESSAGE = 8;
/** How many stored messages a session chat reads back before fitting them to the context. */
const SESSION_HISTORY_LIMIT = 1000;

export class ModelRegistryActor extends Actor {
  private backend: InferenceBackend | undefined;
  private backendReady: Promise<void> = Promise.resolve();
  private readonly catalog: ModelCatalog;
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private readonly stats = new Map<string, ModelStats>();
  private defaults: SamplingParams = {};
  private readonly freeMemory: () => number;

  constructor(
    bus: Bus,
    log: Log,
    private readonly opts: ModelRegistryOptions,
  ) {
    super(Addresses.models, bus, log);
    this.catalog = new ModelCatalog(opts.modelsDir, opts.models);
    this.freeMemory = opts.freeMemory ?? (() => os.freemem());
    this.on('chat', (p: ChatPayload, ctx) => this.chat(p, ctx));
    this.on('generate', (p: GeneratePayload, ctx) => this.generate(p, ctx));
    this.on('embeddings', (p: PayloadOf<typeof I.embeddings>, ctx) => this.embeddings(p, ctx));
    this.on('tokenize', (p: PayloadOf<typeof I.tokenize>, ctx) =>
      this.using(p.model, async (m) => ({ tokens: await this.pool.tokenize(m.id, p.text, callOpts(ctx)) })),
    );
    this.on('detokenize', (p: PayloadOf<typeof I.detokenize>, ctx) =>
      this.using(p.model, async (m) => ({ text: await this.pool.detokenize(m.id, p.tokens, callOpts(ctx)) })),
    );
    this.on('get_stats', () => this.getStats());
    this.on('models', (p: PayloadOf<typeof M.models>) => this.listModels(p?.filter));
    this.on('model_info', (p: PayloadOf<typeof M.modelInfo>) => this.entry(this.catalog.resolve(p.model_id)));
    this.on('load_model', (p: PayloadOf<typeof M.loadModel>, ctx) => this.loadModel(p, ctx));
    this.on('unload_model', async (p: PayloadOf<typeof M.unloadModel>) => {
      this.catalog.resolve(p.model_id);
      return { model_id: p.model_id, unloaded: await this.unload(p.model_id, 'requested') };
    });
    this.on('get_loaded_models', () => ({
      models: [...this.loaded.values()].map((m) => this.describe(m)),
      max_loaded_models: opts.inference.max_loaded_models,
      keep_alive_s: opts.inference.keep_alive_s,
    }));
    this.on('get_params', () => ({ params: this.defaults }));
    this.on('set_params', (p: PayloadOf<typeof M.setParams>) => {
      const next: Record<string, unknown> = { ...this.defaults };
      for (const [k, value] of Object.entries(p.params)) {
        if (value === null) delete next[k];
        else if (value !== undefined) next[k] = k === 'stop' && typeof value === 'string' ? [value] : value;
      }
      this.defaults = next as SamplingParams;
      return { params: this.defaults };
    });
  }

  /**
   * Starts the worker pool in the background (a server without models answers at once; loads wait for it), then
   * loads the configured models; a model that cannot load stops the start with its reason.
   */
  override async start(): Promise<void> {
    this.backend = this.opts.createBackend();
    this.backendReady = this.backend.start();
    this.backendReady.catch((err: unknown) => this.log.error('the inference pool did not start', { err }));
    for (const id of this.catalog.preload()) {
      try {
        await this.ensureLoaded(id, true);
      } catch (err) {
        const e = toTabAgentError(err);
        throw new TabAgentError(e.code, `cannot preload model '${id}': ${e.message}`, e.details);
      }
    }
  }

  override async stop(): Promise<void> {
    for (const m of this.loaded.values()) clearTimeout(m.idleTimer);
    this.loaded.clear();
    const backend = this.backend;
    this.backend = undefined;
    await backend?.close();
  }

  private get pool(): InferenceBackend {
    if (!this.backend) throw new TabAgentError('UNAVAILABLE', 'the inference pool is not running');
    return this.backend;
  }

  // ---- generation ----

  private async chat(p: ChatPayload, ctx: RequestContext): Promise<unknown> {
    return this.using(p.model, async (m) => {
      let messages: ChatMessage[] = p.messages;
      let dropped: number | undefined;
      if (p.session_id !== undefined) {
        for (const msg of p.messages) await this.storage('save_message', { session_id: p.session_id, message: msg, create_if_missing: true }, ctx);
        const fitted = await this.sessionContext(m, p.session_id, p.max_tokens, ctx);
        messages = fitted.messages;
        dropped = fitted.dropped;
      }
      const result = await this.run(m, { kind: 'chat', messages }, p, ctx);
      if (p.session_id !== undefined) {
        const reply: Record<string, unknown> = { role: 'assistant', content: result.text, model: m.id, usage: result.usage };
        if (result.finish_reason === 'cancelled') reply['partial'] = true;
        await this.storage('save_message', { session_id: p.session_id, message: reply }, ctx);
      }
      const out: Record<string, unknown> = {
        ...header(ctx, m.id, result),
        message: { role: 'assistant', content: result.text },
      };
      if (p.session_id !== undefined) {
        out['session_id'] = p.session_id;
        out['history_dropped'] = dropped;
      }
      return out;
    });
  }

  private generate(p: GeneratePayload, ctx: RequestContext): Promise<unknown> {
    return this.using(p.model, async (m) => {
      const result = await this.run(m, { kind: 'completion', prompt: p.prompt }, p, ctx);
      return { ...header(ctx, m.id, result), text: result.text };
    });
  }

  private async run(m: LoadedModel, input: Parameters<InferenceBackend['generate']>[1], p: SamplingPayload, ctx: RequestContext): Promise<GenerateResult> {
    const stats = this.statsOf(m.id);
    stats.started();
    const t0 = performance.now();
    const opts: Parameters<InferenceBackend['generate']>[3] = callOpts(ctx);
    if (p.stream) opts.onText = (delta) => ctx.emit({ delta });
    try {
      const result = await this.pool.generate(m.id, input, this.sampling(p), opts);
      stats.finished(result, performance.now() - t0);
      return result;
    } catch (err) {
      stats.failedOne();
      throw err;
    }
  }

  /** Request fields over the server-wide defaults; OpenAI's response_format becomes a grammar. */
  private sampling(p: SamplingPayload): SamplingParams {
    const s: SamplingParams = { ...this.defaults };
    if (p.max_tokens !== undefined) s.max_tokens = p.max_tokens;
    if (p.temperature !== undefined) s.temperature = p.temperature;
    if (p.top_p !== undefined) s.top_p = p.top_p;
    if (p.top_k !== undefined) s.top_k = p.top_k;
    if (p.min_p !== undefined) s.min_p = p.min_p;
    if (p.seed !== undefined) s.seed = p.seed;
    if (p.repeat_penalty !== undefined) s.repeat_penalty = p.repeat_penalty;
    if (p.stop !== undefined) s.stop = typeof p.stop === 'string' ? [p.stop] : p.stop;
    const rf = p.response_format;
    if (rf?.type === 'json_object') s.json_object = true;
    else if (rf?.type === 'json_schema') s.json_schema = rf.json_schema.schema;
    return s;
  }

  private embeddings(p: PayloadOf<typeof I.embeddings>, ctx: RequestContext): Promise<unknown> {
    const inputs = typeof p.input === 'string' ? [p.input] : p.input;
    return this.using(p.model, async (m) => {
      const r = await this.pool.embed(m.id, inputs, callOpts(ctx));
      return {
        model: m.id,
        data: r.vectors.map((embedding, index) => ({ index, embedding })),
        usage: { prompt_tokens: r.tokens, total_tokens: r.tokens },
      };
    });
  }

  /**
   * A session's stored conversation fitted to the context (policy in docs/storage.md): system messages stay, then
   * the newest whole turns that fit beside the reply's reserve. Messages are tokenized newest first, only as far back
   * as the context could reach.
   */
  private async sessionContext(m: LoadedModel, sessionId: string, maxTokens: number | undefined, ctx: RequestContext) {
    const page = (await this.storage('get_history', { session_id: sessionId, limit: SESSION_HISTORY_LIMIT, from: 'end' }, ctx)) as {
      messages: ChatMessage[];
    };
    const history = page.messages.map((msg) => ({ role: msg.role, content: msg.content, ...(msg.name !== undefined ? { name: msg.name } : {}) }));
    const context = contextTokens(this.opts.inference.context_size, m.meta.context_length);
    const reserve = Math.min(context - 1, (maxTokens ?? Math.min(1024, Math.floor(context / 4))) + TEMPLATE_TOKENS_PER_MESSAGE);
    const counts = new Map<ChatMessage, number>();
    const count = async (batch: ChatMessage[]): Promise<number> => {
      const tokens = await Promise.all(batch.map((msg) => this.pool.tokenize(m.id, msg.content, callOpts(ctx))));
      let sum = 0;
      batch.forEach((msg, k) => {
        const n = tokens[k]!.length + TEMPLATE_TOKENS_PER_MESSAGE;
        counts.set(msg, n);
        sum += n;
      });
      return sum;
    };
    // System messages are always kept, so each is counted wherever it stands; the rest only as far back as the context reaches.
    await count(history.filter((msg) => msg.role === 'system'));
    let total = 0;
    for (let i = history.length - 1; i >= 0 && total <= context; i -= 32) {
      total += await count(history.slice(Math.max(0, i - 31), i + 1).filter((msg) => !counts.has(msg)));
    }
    return fitHistoryToContext(history, {
      contextTokens: context,
      reserveTokens: reserve,
      countTokens: (msg) => counts.get(msg) ?? Number.POSITIVE_INFINITY,
    });
  }

  private storage(route: string, payload: unknown, ctx: RequestContext): Promise<unknown> {
    return this.bus.request(Addresses.storage, { route, payload, requestId: ctx.requestId }, { from: this.address, traceId: ctx.envelope.traceId });
  }

  // ---- load and unload decisions ----

  /** Runs `fn` with the model loaded (auto-loading it if allowed), counting it in flight so eviction and keep-alive leave it alone. */
  private async using<T>(id: string, fn: (m: LoadedModel) => Promise<T>): Promise<T> {
    const m = await this.ensureLoaded(id, this.opts.inference.auto_load);
    m.inFlight++;
    m.lastUsed = Date.now();
    clearTimeout(m.idleTimer);
    try {
      return await fn(m);
    } finally {
      m.inFlight--;
      m.lastUsed = Date.now();
      if (m.inFlight === 0) this.armKeepAlive(m);
    }
  }

  private async ensureLoaded(id: string, autoLoad: boolean, onProgress?: (ready: number, total: number) => void): Promise<LoadedModel> {
    const ready = this.loaded.get(id);
    if (ready) return ready;
    const pending = this.loading.get(id);
    if (pending) return pending;
    const entry = this.catalog.resolve(id);
    if (!autoLoad) {
      throw new TabAgentError(
        'MODEL_NOT_LOADED',
        `model '${id}' is not loaded and auto-load is off; load it with the load_model route ({"model_id": "${id}"}, HTTP POST /v1/models/load) or set inference.auto_load = true`,
        { model: id },
      );
    }
    const p = this.load(entry.id, entry.path, onProgress).finally(() => this.loading.delete(id));
    this.loading.set(id, p);
    return p;
  }

  private async load(id: string, file: string, onProgress?: (ready: number, total: number) => void): Promise<LoadedModel> {
    const meta = await readGgufMetadata(file);
    await this.makeRoom(id);
    const pool = this.pool;
    const need = estimateModelBytes(meta, {
      workers: pool.options.workers,
      contextsPerWorker: pool.options.contexts ?? 1,
      cellsPerContext: contextTokens(this.opts.inference.context_size, meta.context_length) * pool.options.maxSequences,
    });
    const free = this.freeMemory();
    if (need > free) {
      throw new TabAgentError(
        'INSUFFICIENT_MEMORY',
        `model '${id}' needs about ${mib(need)} MiB (file ${mib(meta.file_size)} MiB plus KV caches for ${pool.options.workers} worker(s) x ${pool.options.maxSequences} sequences) ` +
          `but only ${mib(free)} MiB are free; unload a model, or lower inference.context_size or inference.max_sequences`,
        { model: id, needed_bytes: need, free_bytes: free },
      );
    }
    const t0 = Date.now();
    await this.backendReady;
    const info = await pool.load(id, file, onProgress);
    const m: LoadedModel = { id, path: file, info, meta, loadedAt: Date.now(), lastUsed: Date.now(), inFlight: 0, memoryBytes: need, idleTimer: undefined };
    this.loaded.set(id, m);
    this.armKeepAlive(m);
    this.log.info('model loaded', { model: id, path: file, ms: Date.now() - t0, memory_bytes: need });
    this.bus.publish('model.loaded', { model: id }, this.address);
    return m;
  }

  /** Past max_loaded_models, unloads the least recently used idle models; if every one is busy, BUSY. */
  private async makeRoom(incoming: string): Promise<void> {
    const max = this.opts.inference.max_loaded_models;
    const othersLoading = (): number => this.loading.size - (this.loading.has(incoming) ? 1 : 0);
    while (this.loaded.size + othersLoading() >= max) {
      const idle = [...this.loaded.values()].filter((m) => m.inFlight === 0).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!idle) {
        throw new TabAgentError('BUSY', `${max} models are loaded (inference.max_loaded_models) and all are in use; retry when one is idle`, {
          max_loaded_models: max,
          retry_after_ms: 1000,
        });
      }
      await this.unload(idle.id, `evicted (least recently used) to load '${incoming}'`);
    }
  }

  private async unload(id: string, reason: string): Promise<boolean> {
    const m = this.loaded.get(id);
    if (!m) return false;
    clearTimeout(m.idleTimer);
    this.loaded.delete(id);
    await this.pool.unload(id);
    this.log.info('model unloaded', { model: id, reason });
    this.bus.publish('model.unloaded', { model: id, reason }, this.address);
    return true;
  }

  private armKeepAlive(m: LoadedModel): void {
    clearTimeout(m.idleTimer);
    const s = this.opts.inference.keep_alive_s;
    if (s <= 0) return;
    m.idleTimer = setTimeout(() => {
      if (m.inFlight === 0 && this.loaded.get(m.id) === m) void this.unload(m.id, `idle for ${s} s (inference.keep_alive_s)`).catch(() => {});
    }, s * 1000);
    m.idleTimer.unref();
  }

  private async loadModel(p: PayloadOf<typeof M.loadModel>, ctx: RequestContext): Promise<unknown> {
    if (p.force_reload) await this.unload(p.model_id, 'force_reload');
    const onProgress = p.stream ? (ready: number, total: number) => ctx.emit({ model_id: p.model_id, workers_ready: ready, workers: total }) : undefined;
    return this.describe(await this.ensureLoaded(p.model_id, true, onProgress));
  }

  // ---- descriptions ----

  private describe(m: LoadedModel) {
    const keep = this.opts.inference.keep_alive_s;
    return {
      id: m.id,
      path: m.path,
      loaded_at: new Date(m.loadedAt).toISOString(),
      last_used_at: new Date(m.lastUsed).toISOString(),
      expires_at: keep > 0 && m.inFlight === 0 ? new Date(m.lastUsed + keep * 1000).toISOString() : null,
      in_flight: m.inFlight,
      memory_bytes: m.memoryBytes,
    };
  }

  private async entry(e: { id: string; path: string }) {
    const base = { id: e.id, path: e.path, loaded: this.loaded.has(e.id) };
    try {
      const meta = await readGgufMetadata(e.path);
      return {
        ...base,
        size_bytes: meta.file_size,
        architecture: meta.architecture,
        parameters: meta.parameters,
        quantization: meta.quantization,
        context_length: meta.context_length,
        embedding_length: meta.embedding_length,
        has_chat_template: meta.has_chat_template,
      };
    } catch (err) {
      const empty = { size_bytes: 0, architecture: null, parameters: null, quantization: null, context_length: null, embedding_length: null, has_chat_template: false };
      return { ...base, ...empty, error: (err as Error).message };
    }
  }

  private async listModels(filter: string | undefined) {
    const entries = this.catalog.list().filter((e) => !filter || e.id.toLowerCase().includes(filter.toLowerCase()));
    return { models: await Promise.all(entries.map((e) => this.entry(e))) };
  }

  private statsOf(id: string): ModelStats {
    let s = this.stats.get(id);
    if (!s) this.stats.set(id, (s = new ModelStats()));
    return s;
  }

  private getStats() {
    const pool = this.pool.stats();
    return {
      pool,
      queue_depth: pool.queued,
      models: Object.fromEntries([...this.stats].map(([id, s]) => [id, { loaded: this.loaded.has(id), ...s.snapshot() }])),
    };
  }
}

function callOpts(ctx: RequestContext) {
  return { priority: ctx.priority, signal: ctx.signal, requestId: ctx.requestId } as { priority: RequestContext['priority']; signal: AbortSignal; requestId: string; onText?: (d: string) => void };
}

function header(ctx: RequestContext, model: string, r: GenerateResult) {
  return { id: `gen-${ctx.requestId}`, model, created: Math.floor(Date.now() / 1000), finish_reason: r.finish_reason, usage: r.usage };
}

function mib(bytes: number): number {
  return Math.round(bytes / 1048576);
}
