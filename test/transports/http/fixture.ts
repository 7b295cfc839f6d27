/**
 * The server the HTTP tests talk to. With the model registry in the route table (`chat` exists) it is
 * the real server process with the synthetic tiny model; until then, an in-process server whose
 * models actor is a deterministic stand-in speaking the pinned inference contract.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as v from 'valibot';
import { Actor } from '../../../src/actors/actor.js';
import { Addresses } from '../../../src/bus/addresses.js';
import type { RequestContext } from '../../../src/bus/bus.js';
import { TabAgentError } from '../../../src/protocol/errors.js';
import { defineRoute } from '../../../src/protocol/route.js';
import { allRoutes } from '../../../src/protocol/routes/index.js';
import { ConfigStore, loadConfig } from '../../../src/runtime/config.js';
import { createLogger } from '../../../src/runtime/logger.js';
import { coreActorFactories, startServer, type ServerContext } from '../../../src/server.js';
import '../../../src/transports/http/index.js';
import { startServerProcess } from '../../helpers/server-process.js';

export const REAL_MODEL = allRoutes.some((r) => r.name === 'chat');

export interface TestServer {
  url: string;
  wsUrl: string;
  port: number;
  model: string;
  stop(): Promise<void>;
}

export interface FixtureOptions {
  /** Config flags by dotted key (`http.body_limit_bytes`, `http.cors_origins`, ...). */
  flags?: Record<string, unknown>;
  /** The same keys as CLI args for the real process. */
  args?: string[];
}

export async function startTestServer(opts: FixtureOptions = {}): Promise<TestServer> {
  if (REAL_MODEL) {
    const env: Record<string, string> = { TABAGENT_LOG_LEVEL: 'warn' };
    for (const [k, val] of Object.entries(opts.flags ?? {})) env[`TABAGENT_${k.toUpperCase().split('.').join('__')}`] = Array.isArray(val) ? val.join(',') : String(val);
    const p = await startServerProcess({ mode: 'http', model: 'tiny', env, args: opts.args ?? [] });
    return { url: p.url, wsUrl: p.wsUrl, port: p.port, model: p.modelId!, stop: async () => void (await p.stop()) };
  }
  return startStandInServer(opts.flags ?? {});
}

const Sampling = {
  model: v.string(),
  max_tokens: v.optional(v.number()),
  temperature: v.optional(v.number()),
  top_p: v.optional(v.number()),
  top_k: v.optional(v.number()),
  min_p: v.optional(v.number()),
  seed: v.optional(v.number()),
  stop: v.optional(v.union([v.string(), v.array(v.string())])),
  repeat_penalty: v.optional(v.number()),
  response_format: v.optional(v.unknown()),
  stream: v.optional(v.boolean()),
  session_id: v.optional(v.string()),
};
const standInRoutes = [
  defineRoute({ name: 'chat', owner: Addresses.models, summary: 'stand-in chat', streaming: true, input: v.object({ ...Sampling, messages: v.array(v.object({ role: v.string(), content: v.string(), name: v.optional(v.string()) })) }) }),
  defineRoute({ name: 'generate', owner: Addresses.models, summary: 'stand-in generate', streaming: true, input: v.object({ ...Sampling, prompt: v.string() }) }),
  defineRoute({ name: 'embeddings', owner: Addresses.models, summary: 'stand-in embeddings', input: v.object({ model: v.string(), input: v.union([v.string(), v.array(v.string())]) }) }),
  defineRoute({ name: 'models', owner: Addresses.models, summary: 'stand-in models', input: v.optional(v.object({ filter: v.optional(v.string()) })) }),
  defineRoute({ name: 'model_info', owner: Addresses.models, summary: 'stand-in model_info', input: v.object({ model_id: v.string() }) }),
];

const MODEL = 'test-tiny';

/** Deterministic generation: token i is `t{i} `, one per event-loop turn, honouring cancel like the real registry. */
class StandInModels extends Actor {
  constructor(ctx: ServerContext) {
    super(Addresses.models, ctx.bus, ctx.log);
    this.on('chat', (p, c) => this.generate(p, c, (text, base) => ({ ...base, message: { role: 'assistant', content: text } })));
    this.on('generate', (p, c) => this.generate(p, c, (text, base) => ({ ...base, text })));
    this.on('embeddings', (p: { model: string; input: string | string[] }) => {
      this.known(p.model);
      const inputs = typeof p.input === 'string' ? [p.input] : p.input;
      return {
        model: MODEL,
        data: inputs.map((s, index) => ({ index, embedding: Array.from({ length: 8 }, (_, k) => ((s.length + k) % 5) / 4 - 0.5) })),
        usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
      };
    });
    this.on('models', () => ({ models: [{ id: MODEL, path: `/models/${MODEL}.gguf`, size_bytes: 1, loaded: true, architecture: 'llama', quantization: 'F32', context_length: 2048 }] }));
    this.on('model_info', (p: { model_id: string }) => {
      this.known(p.model_id);
      return { id: MODEL, path: `/models/${MODEL}.gguf`, size_bytes: 1, loaded: true, architecture: 'llama', quantization: 'F32', context_length: 2048 };
    });
  }

  private known(model: string): void {
    if (model !== MODEL) throw new TabAgentError('MODEL_NOT_FOUND', `model '${model}' not found`, { available: [MODEL] });
  }

  private async generate(p: { model: string; max_tokens?: number; stream?: boolean }, ctx: RequestContext, shape: (text: string, base: Record<string, unknown>) => unknown): Promise<unknown> {
    this.known(p.model);
    const n = p.max_tokens ?? 16;
    let text = '';
    let finish = 'length';
    for (let i = 0; i < n; i++) {
      if (ctx.signal.aborted) {
        finish = 'cancelled';
        break;
      }
      await new Promise((r) => setImmediate(r));
      const delta = `t${i} `;
      text += delta;
      if (p.stream) ctx.emit({ delta });
    }
    if (ctx.signal.aborted) finish = 'cancelled';
    const produced = text.split(' ').length - 1;
    return shape(text, { id: `gen-${ctx.requestId}`, model: MODEL, created: Math.floor(Date.now() / 1000), finish_reason: finish, usage: { prompt_tokens: 3, completion_tokens: produced, total_tokens: 3 + produced } });
  }
}

/**
 * Always in process with the stand-in token source: for transport-level tests that need more output
 * than a real model's context allows (a stream bigger than the kernel's socket buffers).
 */
export async function startStandInServer(flags: Record<string, unknown> = {}): Promise<TestServer> {
  for (const r of standInRoutes) if (!allRoutes.some((a) => a.name === r.name)) allRoutes.push(r);
  if (!coreActorFactories.some((f) => f.address === Addresses.models)) coreActorFactories.push({ address: Addresses.models, create: (ctx) => new StandInModels(ctx) });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-http-'));
  const loadOpts = { flags: { mode: 'http', port: 0, host: '127.0.0.1', data_dir: dataDir, ...flags }, env: {} };
  const store = new ConfigStore(loadConfig(loadOpts), loadOpts);
  const server = await startServer(store, createLogger('warn'));
  const url = server.context.facts.listeners['http']!;
  return {
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`,
    port: Number(new URL(url).port),
    model: MODEL,
    stop: async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
