/** Fixtures for the WebRTC tests: a composed server (real bus, router, transport and its HTTP listener) with a streaming echo actor. */
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as v from 'valibot';
import { Actor } from '../../../src/actors/actor.js';
import { RouterActor } from '../../../src/actors/router.js';
import { Supervisor } from '../../../src/actors/supervisor.js';
import type { ServerFacts } from '../../../src/actors/system.js';
import { SystemActor } from '../../../src/actors/system.js';
import { Addresses } from '../../../src/bus/addresses.js';
import { Bus, type RequestContext } from '../../../src/bus/bus.js';
import { defineRoute, type RouteDef } from '../../../src/protocol/route.js';
import { allRoutes } from '../../../src/protocol/routes/index.js';
import { ConfigStore, loadConfig } from '../../../src/runtime/config.js';
import { createLogger } from '../../../src/runtime/logger.js';
import { writeTestModel } from '../../../src/runtime/gguf/index.js';
import { startServer, type ServerContext } from '../../../src/server.js';
import '../../../src/transports/register.js';
import { Gateway } from '../../../src/transports/gateway.js';
import { HttpTransport } from '../../../src/transports/http/transport.js';
import { WebRtcTransport } from '../../../src/transports/webrtc/transport.js';
import type { PeerConnectionCtor } from '../../../src/client/webrtc.js';

const require = createRequire(import.meta.url);
export const wrtc = require('@roamhq/wrtc') as { RTCPeerConnection: PeerConnectionCtor & (new (c?: unknown) => any) };

/** Streams `count` chunks of `size` characters, `delay_ms` apart; honours cancel; echoes `echo` back. */
export const testStream = defineRoute({
  name: 'test_stream',
  owner: 'test.stream',
  summary: 'test fixture',
  input: v.object({ count: v.optional(v.number(), 3), size: v.optional(v.number(), 4), delay_ms: v.optional(v.number(), 0), echo: v.optional(v.unknown()) }),
  streaming: true,
});

/** How each test_stream request ended, by its `echo`: lets a test see a request cancelled on a channel it can no longer read. */
export const streamEnds = new Map<unknown, string>();

class StreamActor extends Actor {
  constructor(bus: Bus) {
    super('test.stream', bus, createLogger('silent'));
    this.on('test_stream', async (p: v.InferOutput<typeof testStream.input>, ctx: RequestContext) => {
      let sent = 0;
      for (; sent < p.count; sent++) {
        if (ctx.signal.aborted) break;
        ctx.emit({ i: sent, delta: 'x'.repeat(p.size) });
        if (p.delay_ms > 0) await new Promise((r) => setTimeout(r, p.delay_ms));
      }
      streamEnds.set(p.echo ?? null, ctx.signal.aborted ? 'cancelled' : 'stop');
      if (ctx.signal.aborted) return { count: sent, finish_reason: 'cancelled' };
      return { count: sent, finish_reason: 'stop', echo: p.echo ?? null };
    });
  }
}

export interface Harness {
  ctx: ServerContext;
  transport: WebRtcTransport;
  /** The signalling client's fetch (the real one, against the --webrtc-port listener). */
  fetch: (url: string, init: { method: string; headers: Record<string, string>; body?: string }) => Promise<{ ok: boolean; status: number; statusText: string; json(): Promise<unknown> }>;
  baseUrl: string;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  /** Other config keys by dotted name (`http.cors_origins`, `extension_ids`, ...). */
  flags?: Record<string, unknown>;
  /** Run the HTTP transport on the main port too (as modes that run both do). */
  http?: boolean;
}

export async function startHarness(webrtc: Record<string, unknown> = {}, opts: HarnessOptions = {}): Promise<Harness> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-webrtc-'));
  const flags: Record<string, unknown> = { mode: 'webrtc', data_dir: dataDir, webrtc_port: 0, port: 0, log_level: 'silent', ...opts.flags };
  for (const [k, val] of Object.entries(webrtc)) flags[`webrtc.${k}`] = val;
  const configOpts = { flags, env: {} };
  const store = new ConfigStore(loadConfig(configOpts), configOpts);
  const log = createLogger(process.env['TEST_LOG'] ? 'debug' : 'silent');
  const bus = new Bus();
  const supervisor = new Supervisor(bus, log);
  const routes: RouteDef[] = [...allRoutes, testStream];
  const router = new RouterActor(bus, log, routes);
  const facts: ServerFacts = { mode: 'webrtc', startedAt: Date.now(), listeners: {}, checks: {} };
  const ctx: ServerContext = { bus, log, store, facts, routes, router, gateway: (from) => new Gateway(bus, from), requestShutdown: () => {} };
  await supervisor.spawn({ address: Addresses.system, create: () => new SystemActor(bus, log, facts) });
  await supervisor.spawn({ address: 'test.stream', create: () => new StreamActor(bus) });
  await supervisor.spawn({ address: Addresses.router, create: () => router });
  const transport = (await supervisor.spawn({ address: Addresses.webrtcTransport, create: () => new WebRtcTransport(ctx) })) as WebRtcTransport;
  if (opts.http) await supervisor.spawn({ address: Addresses.httpTransport, create: () => new HttpTransport(ctx) });
  const baseUrl = facts.listeners['webrtc']!;
  const fetch: Harness['fetch'] = (url, init) => globalThis.fetch(url, init);
  return {
    ctx,
    transport,
    fetch,
    baseUrl,
    stop: async () => {
      await supervisor.stopAll();
      store.close();
    },
  };
}

/**
 * Serves a test page and the client modules (TypeScript transpiled on the fly) on its own origin,
 * so the page reaches the server cross-origin, as a real page does.
 */
export async function servePage(pageScript: string): Promise<{ url: string; close(): Promise<void> }> {
  const http = await import('node:http');
  const { readFile } = await import('node:fs/promises');
  const ts = (await import('typescript')).default;
  const root = path.resolve(import.meta.dirname, '../../..');
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><html><body><script type="module">${pageScript}</script></body></html>`);
      return;
    }
    if (url.pathname.startsWith('/src/') && url.pathname.endsWith('.js')) {
      const source = await readFile(path.join(root, url.pathname.replace(/\.js$/, '.ts')), 'utf8').catch(() => null);
      if (source === null) return void res.writeHead(404).end();
      const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } });
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(out.outputText);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** The real server in webrtc mode with the synthetic tiny model (id `tiny`), one inference thread. */
export async function startModelServer(flags: Record<string, unknown> = {}): Promise<{ baseUrl: string; transport: WebRtcTransport; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-webrtc-model-'));
  mkdirSync(path.join(dataDir, 'models'));
  await writeTestModel(path.join(dataDir, 'models', 'tiny.gguf'), { size: 'tiny' });
  const opts = { flags: { mode: 'webrtc', data_dir: dataDir, webrtc_port: 0, log_level: 'silent', 'inference.workers': 1, 'inference.threads': 1, ...flags }, env: {} };
  const store = new ConfigStore(loadConfig(opts), opts);
  const server = await startServer(store, createLogger(process.env['TEST_LOG'] ? 'debug' : 'silent'));
  const transport = server.supervisor.get(Addresses.webrtcTransport) as WebRtcTransport;
  return { baseUrl: server.context.facts.listeners['webrtc']!, transport, stop: () => server.stop() };
}
