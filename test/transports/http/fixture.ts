/**
 * The servers the HTTP tests talk to: the real server process with the synthetic tiny model, and for
 * transport-level tests an in-process server whose models actor is a deterministic stand-in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Actor } from '../../../src/actors/actor.js';
import { Addresses } from '../../../src/bus/addresses.js';
import type { RequestContext } from '../../../src/bus/bus.js';
import { TabAgentError } from '../../../src/protocol/errors.js';
import { ConfigStore, loadConfig } from '../../../src/runtime/config.js';
import { createLogger } from '../../../src/runtime/logger.js';
import { startServer, type ServerContext } from '../../../src/server.js';
import '../../../src/transports/http/index.js';
import { startServerProcess } from '../../helpers/server-process.js';

export interface TestServer {
  url: string;
  wsUrl: string;
  port: number;
  model: string;
  /** The server's JSON log lines so far (the real process only). */
  logs(): Record<string, unknown>[];
  stop(): Promise<void>;
}

export interface FixtureOptions {
  /** Config flags by dotted key (`http.body_limit_bytes`, `http.cors_origins`, ...). */
  flags?: Record<string, unknown>;
  /** The same keys as CLI args for the real process. */
  args?: string[];
  /** The server's log level (default info: the 'server started' line the fixture waits for is at info). */
  logLevel?: 'debug' | 'info';
}

/** The real server process (`serve --mode http`) with the synthetic tiny model preloaded. */
export async function startTestServer(opts: FixtureOptions = {}): Promise<TestServer> {
  const env: Record<string, string> = { TABAGENT_LOG_LEVEL: opts.logLevel ?? 'info' };
  for (const [k, val] of Object.entries(opts.flags ?? {})) env[`TABAGENT_${k.toUpperCase().split('.').join('__')}`] = Array.isArray(val) ? val.join(',') : String(val);
  // Loading the model in every worker is slow when the cores are busy (other test files run in parallel).
  const p = await startServerProcess({ mode: 'http', model: 'tiny', env, args: opts.args ?? [], startTimeoutMs: 120_000 });
  return { url: p.url, wsUrl: p.wsUrl, port: p.port, model: p.modelId!, logs: () => p.logs(), stop: async () => void (await p.stop()) };
}

/**
 * A response_format under which the tiny model cannot stop early: its grammar forbids the end of
 * output before 300 booleans, so it generates until its context is full (~2000 tokens, seconds).
 */
export const LONG_OUTPUT = { type: 'json_schema', json_schema: { name: 'long', schema: { type: 'array', items: { type: 'boolean' }, minItems: 300 } } };

const MODEL = 'test-tiny';

type StandInChat = { model: string; messages: { role: string; content: string }[]; max_tokens?: number; stream?: boolean };

/**
 * Deterministic chat: token i is `t{i} ` followed by the system message's text, if any (a knob for big
 * tokens); one token per event-loop turn, honouring cancel like the real registry.
 */
class StandInModels extends Actor {
  constructor(ctx: ServerContext) {
    super(Addresses.models, ctx.bus, ctx.log);
    this.on('chat', (p: StandInChat, ctx: RequestContext) => this.chat(p, ctx));
  }

  private async chat(p: StandInChat, ctx: RequestContext): Promise<unknown> {
    if (p.model !== MODEL) throw new TabAgentError('MODEL_NOT_FOUND', `model '${p.model}' not found`, { available: [MODEL] });
    const pad = p.messages.find((m) => m.role === 'system')?.content ?? '';
    let text = '';
    let produced = 0;
    for (; produced < (p.max_tokens ?? 16) && !ctx.signal.aborted; produced++) {
      await new Promise((r) => setImmediate(r));
      const delta = `t${produced} ${pad}`;
      text += delta;
      if (p.stream) ctx.emit({ delta });
    }
    return {
      id: `gen-${ctx.requestId}`,
      model: MODEL,
      created: Math.floor(Date.now() / 1000),
      message: { role: 'assistant', content: text },
      finish_reason: ctx.signal.aborted ? 'cancelled' : 'length',
      usage: { prompt_tokens: 3, completion_tokens: produced, total_tokens: 3 + produced },
    };
  }
}

/**
 * Always in process with the stand-in token source: for transport-level tests that need more output
 * than a real model's context allows (a stream bigger than the kernel's socket buffers).
 */
export async function startStandInServer(flags: Record<string, unknown> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-http-'));
  const loadOpts = { flags: { mode: 'http', port: 0, host: '127.0.0.1', data_dir: dataDir, ...flags }, env: {} };
  const store = new ConfigStore(loadConfig(loadOpts), loadOpts);
  const server = await startServer(store, createLogger('warn'), { replaceActors: [{ address: Addresses.models, create: (ctx) => new StandInModels(ctx) }] });
  const url = server.context.facts.listeners['http']!;
  return {
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`,
    port: Number(new URL(url).port),
    model: MODEL,
    logs: () => [],
    stop: async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
