/** WebRTC data-channel benchmark: request round trip vs a raw @roamhq/wrtc echo, streamed chunks/s vs in-process, handshake time; `--soak N` runs connect/close cycles and watches RSS and handles. */
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as v from 'valibot';
import { Actor } from '../src/actors/actor.js';
import { RouterActor } from '../src/actors/router.js';
import { Supervisor } from '../src/actors/supervisor.js';
import { SystemActor, type ServerFacts } from '../src/actors/system.js';
import { Addresses } from '../src/bus/addresses.js';
import { Bus, type RequestContext } from '../src/bus/bus.js';
import { TabAgentRtcClient, type ConnectOptions, type PeerConnectionCtor } from '../src/client/webrtc.js';
import { httpStatusFor, type TabAgentError } from '../src/protocol/errors.js';
import { defineRoute, type RouteDef } from '../src/protocol/route.js';
import { allRoutes } from '../src/protocol/routes/index.js';
import { ConfigStore, loadConfig } from '../src/runtime/config.js';
import { silentLog } from '../src/runtime/logger.js';
import { writeTestModel } from '../src/runtime/gguf/index.js';
import { startServer, type ServerContext } from '../src/server.js';
import '../src/transports/register.js';
import { Gateway } from '../src/transports/gateway.js';
import { WebRtcTransport } from '../src/transports/webrtc/transport.js';
import { writeResult } from './harness/report.js';
import type { Figure } from './harness/types.js';

const require = createRequire(import.meta.url);
const wrtc = require('@roamhq/wrtc') as { RTCPeerConnection: PeerConnectionCtor & (new (c?: unknown) => any) };

/** A token source with no model behind it: the transport's own cost is what is left to measure. */
const benchStream = defineRoute({
  name: 'bench_stream',
  owner: 'bench.stream',
  summary: 'benchmark token source',
  input: v.object({ tokens: v.number(), pace_us: v.optional(v.number(), 0) }),
  streaming: true,
});

class StreamActor extends Actor {
  constructor(bus: Bus) {
    super('bench.stream', bus, silentLog);
    this.on('bench_stream', async (p: { tokens: number; pace_us: number }, ctx: RequestContext) => {
      const start = performance.now();
      for (let i = 0; i < p.tokens; i++) {
        if (ctx.signal.aborted) break;
        ctx.emit({ delta: 'tok' });
        // Paced on a fixed schedule, as a model computing in a worker thread produces tokens whatever the main thread is doing.
        const wait = start + ((i + 1) * p.pace_us) / 1000 - performance.now();
        if (p.pace_us > 0 && wait > 0) await new Promise((r) => setTimeout(r, wait));
        else if (i % 64 === 63) await new Promise((r) => setImmediate(r));
      }
      return { tokens: p.tokens };
    });
  }
}

interface Rig {
  gateway: Gateway;
  transport: WebRtcTransport;
  connect(extra?: Partial<ConnectOptions>): Promise<TabAgentRtcClient>;
  stop(): Promise<void>;
}

/** The real bus, router and WebRTC transport; signalling is handed to the router directly (the HTTP hop is the HTTP bench's subject). */
async function startRig(): Promise<Rig> {
  const flags = { mode: 'webrtc', data_dir: mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-webrtc-')), webrtc_port: 0, log_level: 'silent', 'webrtc.max_sessions_per_address': 100_000 };
  const store = new ConfigStore(loadConfig({ flags, env: {} }), { flags, env: {} });
  const bus = new Bus();
  const supervisor = new Supervisor(bus, silentLog);
  const routes: RouteDef[] = [...allRoutes, benchStream];
  const router = new RouterActor(bus, silentLog, routes);
  const facts: ServerFacts = { mode: 'webrtc', startedAt: Date.now(), listeners: {}, checks: {} };
  const ctx: ServerContext = { bus, log: silentLog as ServerContext['log'], store, facts, routes, router, gateway: (from) => new Gateway(bus, from), requestShutdown: () => {} };
  await supervisor.spawn({ address: Addresses.system, create: () => new SystemActor(bus, silentLog, facts) });
  await supervisor.spawn({ address: 'bench.stream', create: () => new StreamActor(bus) });
  await supervisor.spawn({ address: Addresses.router, create: () => router });
  const transport = (await supervisor.spawn({ address: Addresses.webrtcTransport, create: () => new WebRtcTransport(ctx) })) as WebRtcTransport;
  const gateway = new Gateway(bus, 'bench');
  let n = 0;
  const fetch: ConnectOptions['fetch'] = async (url, init) => {
    const u = new URL(url);
    const body = init.body ? (JSON.parse(init.body) as Record<string, unknown>) : {};
    const m = /^\/v1\/webrtc\/(offer|answer|ice)$|^\/v1\/webrtc\/session\/([^/]+)(\/candidates)?$/.exec(u.pathname);
    const route = m?.[1] ? `webrtc_${m[1]}` : m?.[3] ? 'webrtc_candidates' : init.method === 'DELETE' ? 'webrtc_close' : 'webrtc_session';
    const payload = m?.[2] ? { ...Object.fromEntries(u.searchParams), session_id: m[2] } : { ...body, _remote_address: '127.0.0.1' };
    try {
      const data = await gateway.call(route, payload, `sig-${++n}`);
      return { ok: true, status: 200, statusText: 'OK', json: async () => data };
    } catch (err) {
      const e = err as TabAgentError;
      return { ok: false, status: httpStatusFor[e.code], statusText: e.code, json: async () => ({ code: e.code, detail: e.message }) };
    }
  };
  return {
    gateway,
    transport,
    connect: (extra = {}) => TabAgentRtcClient.connect({ baseUrl: 'http://bus.invalid', fetch, RTCPeerConnection: wrtc.RTCPeerConnection, ...extra }),
    stop: async () => {
      await supervisor.stopAll();
      store.close();
    },
  };
}

/** Two @roamhq/wrtc peers with a channel whose far end echoes every message: the floor under any protocol. */
async function rawEcho(): Promise<{ send(msg: string | Uint8Array): Promise<void>; close(): void }> {
  const a = new wrtc.RTCPeerConnection();
  const b = new wrtc.RTCPeerConnection();
  const dc = a.createDataChannel('echo');
  dc.binaryType = 'arraybuffer';
  b.ondatachannel = (ev: any) => {
    ev.channel.binaryType = 'arraybuffer';
    ev.channel.onmessage = (m: any) => ev.channel.send(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
  };
  await a.setLocalDescription(await a.createOffer());
  await gathered(a);
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await gathered(b);
  await a.setRemoteDescription(b.localDescription);
  if (dc.readyState !== 'open') await new Promise((r) => (dc.onopen = r));
  let waiter: (() => void) | undefined;
  dc.onmessage = () => waiter?.();
  return {
    send: (msg) =>
      new Promise<void>((r) => {
        waiter = r;
        dc.send(msg);
      }),
    close: () => {
      dc.close();
      a.close();
      b.close();
    },
  };
}

function gathered(pc: any): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((x, y) => x - y);
  return { p50: pct(s, 50), p99: pct(s, 99) };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const soakAt = args.indexOf('--soak');
  if (soakAt >= 0) return soak(Number(args[soakAt + 1]) || 1000);
  const requests = Number(args[args.indexOf('--requests') + 1]) || 3000;
  const rig = await startRig();
  const figures: Figure[] = [];

  // Round trip: alternate batches of raw echo and full requests so both see the same machine load.
  const raw = await rawEcho();
  const client = await rig.connect();
  const request = JSON.stringify({ request_id: 'r-000001', route: 'health', payload: null });
  for (let i = 0; i < 300; i++) {
    await raw.send(request);
    await client.request('health');
  }
  const rawMs: number[] = [];
  const rtcMs: number[] = [];
  const batch = 250;
  for (let done = 0; done < requests; done += batch) {
    for (let i = 0; i < batch; i++) {
      const t0 = performance.now();
      await raw.send(request);
      rawMs.push(performance.now() - t0);
    }
    for (let i = 0; i < batch; i++) {
      const t0 = performance.now();
      await client.request('health');
      rtcMs.push(performance.now() - t0);
    }
  }
  const r = summary(rawMs);
  const c = summary(rtcMs);
  figures.push({ name: 'raw @roamhq/wrtc echo round trip (baseline)', value: round3(r.p50), unit: 'ms p50', p50_ms: round3(r.p50), p99_ms: round3(r.p99), notes: `${rawMs.length} sequential JSON messages` });
  figures.push({
    name: 'data-channel request round trip (health, JSON)',
    value: round3(c.p50),
    unit: 'ms p50',
    baseline: { name: 'raw echo p50', value: round3(r.p50) },
    p50_ms: round3(c.p50),
    p99_ms: round3(c.p99),
    target: 'p50 <= raw + 0.3 ms',
    pass: c.p50 <= r.p50 + 0.3,
    notes: `+${round3(c.p50 - r.p50)} ms over raw at p50 (request parse, router, system actor, reply)`,
  });

  // Bulk echo for scale: 64 KiB binary messages.
  const blob = new Uint8Array(64 * 1024);
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) await raw.send(blob);
  figures.push({ name: 'raw echo, 64 KiB messages (one at a time)', value: Math.round((200 * blob.length * 2) / 1e6 / ((performance.now() - t0) / 1000)), unit: 'MB/s' });
  raw.close();

  // Streaming: the same token source read in-process and over the channel.
  for (const [label, tokens, pace] of [['unpaced (transport capacity)', 20_000, 0], ['paced at 1000 tokens/s (a fast model computing off-thread)', 3_000, 1000]] as const) {
    const inproc = await timeStream((onChunk) => rig.gateway.call('bench_stream', { tokens, pace_us: pace }, `in-${label}`, { onChunk }), tokens);
    const over = await timeStream((onChunk) => client.request('bench_stream', { tokens, pace_us: pace }, { onChunk }), tokens);
    figures.push({
      name: `streamed tokens over the channel, ${label}`,
      value: Math.round(over),
      unit: 'tokens/s',
      baseline: { name: 'in-process (gateway, same source)', value: Math.round(inproc) },
      ratio: Math.round((over / inproc) * 1000) / 1000,
      target: pace > 0 ? '>= 0.95x' : 'informational',
      ...(pace > 0 ? { pass: over / inproc >= 0.95 } : {}),
      notes: `${tokens} chunk frames, one {delta} each`,
    });
  }
  await client.close();

  // Handshake: connect() to an open channel, both flows.
  for (const [flow, trickle] of [['client_offer', false], ['client_offer', true], ['server_offer', false]] as const) {
    const ms: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t = performance.now();
      const x = await rig.connect({ flow, trickle });
      ms.push(performance.now() - t);
      await x.close();
    }
    const s = summary(ms);
    figures.push({ name: `handshake to open channel (${flow}${trickle ? ', trickle' : ', complete SDP'})`, value: round3(s.p50), unit: 'ms p50', p50_ms: round3(s.p50), p99_ms: round3(s.p99), notes: '30 connects, signalling via the router (no HTTP hop)' });
  }
  await rig.stop();
  figures.push(...(await modelStream()));

  const file = writeResult({ suite: 'webrtc', title: 'WebRTC data channel', command: `node dist/bench/webrtc.js${args.length ? ' ' + args.join(' ') : ''}`, figures });
  printMarkdown(figures);
  process.stderr.write(`written ${file}\n`);
}

/**
 * The real server (webrtc mode, HTTP signalling) with the synthetic tiny model on one inference
 * thread: the same streamed chat read in-process and over the channel, alternately, 5 times each.
 */
async function modelStream(): Promise<Figure[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-webrtc-model-'));
  mkdirSync(path.join(dataDir, 'models'));
  await writeTestModel(path.join(dataDir, 'models', 'tiny.gguf'), { size: 'tiny' });
  const flags = { mode: 'webrtc', data_dir: dataDir, webrtc_port: 0, log_level: 'silent', 'inference.workers': 1, 'inference.threads': 1 };
  const server = await startServer(new ConfigStore(loadConfig({ flags, env: {} }), { flags, env: {} }), silentLog as ServerContext['log']);
  const gateway = server.context.gateway('bench');
  const client = await TabAgentRtcClient.connect({ baseUrl: server.context.facts.listeners['webrtc']!, RTCPeerConnection: wrtc.RTCPeerConnection });
  type Reply = { usage: { completion_tokens: number } };
  const payload = { model: 'tiny', messages: [{ role: 'user', content: 'write a long story' }], max_tokens: 256, temperature: 0, stream: true };
  const rate = async (run: (onChunk: () => void) => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    const r = (await run(() => {})) as Reply;
    return r.usage.completion_tokens / ((performance.now() - t0) / 1000);
  };
  await rate((onChunk) => gateway.call('chat', payload, 'warm', { onChunk }));
  const inproc: number[] = [];
  const over: number[] = [];
  for (let i = 0; i < 5; i++) {
    inproc.push(await rate((onChunk) => gateway.call('chat', payload, `in-${i}`, { onChunk })));
    over.push(await rate((onChunk) => client.request('chat', payload, { onChunk })));
  }
  const tokens = ((await gateway.call('chat', payload, 'count')) as Reply).usage.completion_tokens;
  await client.close();
  await server.stop();
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const ratio = median(over) / median(inproc);
  return [
    {
      name: 'streamed chat over the channel, synthetic tiny model (1 thread)',
      value: Math.round(median(over)),
      unit: 'tokens/s',
      baseline: { name: 'in-process (gateway, same chat)', value: Math.round(median(inproc)) },
      ratio: Math.round(ratio * 1000) / 1000,
      target: '>= 0.95x',
      pass: ratio >= 0.95,
      notes: `median of 5 alternating runs, ${tokens} tokens each (greedy), HTTP signalling`,
    },
  ];
}

async function timeStream(run: (onChunk: (d: unknown) => void) => Promise<unknown>, tokens: number): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  await run(() => n++);
  if (n !== tokens) throw new Error(`expected ${tokens} chunks, got ${n}`);
  return tokens / ((performance.now() - t0) / 1000);
}

/** Threads and open descriptors of this process (Linux /proc; -1 elsewhere): what a peer connection holds natively. */
function nativeResources(): { threads: number; fds: number } {
  try {
    const threads = Number(/Threads:\s*(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? -1);
    return { threads, fds: readdirSync('/proc/self/fd').length };
  } catch {
    return { threads: -1, fds: -1 };
  }
}

async function soak(cycles: number): Promise<void> {
  const rig = await startRig();
  const handles = (): number => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
  const rows: { cycle: number; rss_mb: number; handles: number; threads: number; fds: number; sessions: number }[] = [];
  const sample = (cycle: number): void => {
    rows.push({ cycle, rss_mb: Math.round(process.memoryUsage.rss() / 1e5) / 10, handles: handles(), ...nativeResources(), sessions: rig.transport.sessions.size });
  };
  const t0 = performance.now();
  for (let i = 1; i <= cycles; i++) {
    const c = await rig.connect({ trickle: true });
    await c.request('health');
    await c.close();
    if (i % 100 === 0 || i === 1) sample(i);
  }
  const elapsed = (performance.now() - t0) / 1000;
  // The server frees closed peer connections 1 s after they close and again 5 s later (reclaim.ts): measure after both.
  await new Promise((r) => setTimeout(r, 1500));
  sample(cycles);
  await new Promise((r) => setTimeout(r, 5000));
  sample(cycles);
  await rig.stop();
  const first = rows[0]!;
  const half = rows[Math.floor(rows.length / 2)]!;
  const last = rows[rows.length - 1]!;
  const growthPer100 = ((last.rss_mb - half.rss_mb) / (last.cycle - half.cycle)) * 100;
  const maxThreads = Math.max(...rows.map((r) => r.threads));
  const figures: Figure[] = [
    { name: `soak: ${cycles} connect/request/close cycles`, value: Math.round(cycles / elapsed), unit: 'cycles/s', notes: `sessions left ${last.sessions}; handles ${first.handles} -> ${last.handles}` },
    { name: 'soak: threads after the last close', value: last.threads, unit: 'threads', baseline: { name: 'after cycle 1', value: first.threads }, notes: `at most ${maxThreads} during the run (a peer connection holds 2 until collected; server and client peers share this process)` },
    { name: 'soak: open descriptors after the last close', value: last.fds, unit: 'fds', baseline: { name: 'after cycle 1', value: first.fds } },
    { name: 'soak: RSS after the last close', value: last.rss_mb, unit: 'MB', baseline: { name: 'after cycle 1', value: first.rss_mb } },
    { name: 'soak: RSS growth over the second half', value: Math.round(growthPer100 * 10) / 10, unit: 'MB per 100 cycles', notes: 'a leak shows as steady growth; allocator retention levels off' },
  ];
  process.stdout.write('| cycle | RSS MB | threads | fds | handles | live sessions |\n|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${r.cycle} | ${r.rss_mb} | ${r.threads} | ${r.fds} | ${r.handles} | ${r.sessions} |\n`);
  printMarkdown(figures);
  const file = writeResult({ suite: 'webrtc-soak', title: 'WebRTC session soak', command: `node dist/bench/webrtc.js --soak ${cycles}`, figures });
  process.stderr.write(`written ${file}\n`);
}

function printMarkdown(figures: Figure[]): void {
  process.stdout.write('\n| figure | value | baseline | ratio | p50 ms | p99 ms | target | notes |\n|---|---:|---:|---:|---:|---:|---|---|\n');
  for (const f of figures) {
    process.stdout.write(`| ${f.name} | ${f.value} ${f.unit} | ${f.baseline ? `${f.baseline.value} (${f.baseline.name})` : ''} | ${f.ratio ?? ''} | ${f.p50_ms ?? ''} | ${f.p99_ms ?? ''} | ${f.target ?? ''}${f.pass === undefined ? '' : f.pass ? ' ✓' : ' ✗'} | ${f.notes ?? ''} |\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    // Exit once stdout is flushed: a piped stdout is written asynchronously.
    () => process.stdout.write('', () => process.exit(0)),
    (err: unknown) => {
      process.stderr.write(`bench/webrtc: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
