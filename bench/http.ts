/**
 * HTTP transport benchmark, all in one process: raw uWebSockets.js hello-world vs `GET /v1/health` through the
 * bus (same connection count, one keep-alive load generator on a worker thread), WebSocket round trips, and
 * one SSE chat stream's tokens/s vs the same generations called on the inference pool in process. With wrk
 * installed (Debian package), the health figure is also taken by wrk from its own process.
 * Run: npx tsc -p tsconfig.json && node dist/bench/http.js [--connections 64] [--seconds 3] [--rounds 2] [--streams 8] [--tokens 64] [--size small]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { ConfigStore, loadConfig } from '../src/runtime/config.js';
import { writeTestModel, type TestModelSize } from '../src/runtime/gguf/index.js';
import { silentLog, type RootLog } from '../src/runtime/logger.js';
import { createInferencePool, startServer } from '../src/server.js';
import '../src/transports/http/index.js';
import uWS, { LISTEN_EXCLUSIVE_PORT, type us_listen_socket } from '../src/transports/http/uws.js';
import { writeResult, type Figure } from './harness/index.js';
import { SseTokenCounter } from './harness/profiles/http.js';

/** Keep-alive load generator: `connections` sockets, one request in flight on each, for `seconds`; counts responses. */
const LOADGEN = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const { port, path, connections, seconds } = workerData;
const req = Buffer.from('GET ' + path + ' HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n');
let done = 0, errors = 0, stop = false;
const end = Date.now() + seconds * 1000;
let open = connections;
for (let i = 0; i < connections; i++) {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let buf = Buffer.alloc(0);
  s.on('connect', () => s.write(req));
  s.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const h = buf.indexOf('\\r\\n\\r\\n');
      if (h < 0) return;
      const head = buf.subarray(0, h).toString('latin1');
      const m = /content-length: *(\\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (buf.length < h + 4 + len) return;
      if (!head.startsWith('HTTP/1.1 200')) errors++;
      buf = buf.subarray(h + 4 + len);
      done++;
      if (Date.now() >= end) { s.end(); return; }
      s.write(req);
    }
  });
  s.on('close', () => { if (--open === 0) parentPort.postMessage({ done, errors }); });
  s.on('error', () => { errors++; });
}
`;

function load(port: number, urlPath: string, connections: number, seconds: number): Promise<{ rps: number; errors: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(LOADGEN, { eval: true, workerData: { port, path: urlPath, connections, seconds } });
    const t0 = performance.now();
    w.once('message', (m: { done: number; errors: number }) => {
      const s = (performance.now() - t0) / 1000;
      void w.terminate();
      resolve({ rps: m.done / s, errors: m.errors });
    });
    w.once('error', reject);
  });
}

/** The same closed loop from wrk (a C load generator in its own process), when it is installed: an independent check. */
function wrk(port: number, urlPath: string, connections: number, seconds: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const p = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, `http://127.0.0.1:${port}${urlPath}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.once('error', () => resolve(undefined));
    p.once('exit', () => {
      const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
      resolve(m ? Number(m[1]) : undefined);
    });
  });
}

function startRawHello(): Promise<{ port: number; close(): void }> {
  const app = uWS.App();
  app.get('/hello', (res) => {
    res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json').end('{"status":"ok"}'));
  });
  const listen = app.listen as unknown as (h: string, p: number, o: number, cb: (t: us_listen_socket | false) => void) => void;
  return new Promise((resolve, reject) =>
    listen.call(app, '127.0.0.1', 0, LISTEN_EXCLUSIVE_PORT, (t) => {
      if (!t) return reject(new Error('raw uWS could not listen'));
      resolve({ port: uWS.us_socket_local_port(t), close: () => (uWS.us_listen_socket_close(t), app.close()) });
    }),
  );
}

async function wsRoundTrips(url: string, n: number): Promise<number[]> {
  const ws = new WebSocket(url);
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(JSON.stringify({ request_id: `b${i}`, route: 'health' }));
    });
    lat.push(performance.now() - t0);
  }
  ws.close();
  return lat.sort((a, b) => a - b);
}

const PROMPT = 'Tell me a story about the sea.';
/** Generations before each side's measured ones: both start with warm code paths and a loaded model. */
const WARMUP = 3;
const quietLog = (): RootLog => Object.assign(Object.create(silentLog), { setLevel() {} }) as RootLog;

/** One side of the streaming comparison: runs one generation, resolves with its completion tokens. */
interface StreamSide {
  generate(seed: number, maxTokens: number): Promise<number>;
  close(): Promise<void>;
}

/** The baseline: InferencePool.generate in this process, configured as the server configures it. */
async function poolSide(dataDir: string, modelPath: string): Promise<StreamSide> {
  const opts = { flags: { mode: 'http', port: 0, data_dir: dataDir, log_level: 'silent' }, env: {} };
  const pool = createInferencePool(loadConfig(opts).config, quietLog());
  await pool.start();
  await pool.load('bench', modelPath);
  return {
    async generate(seed, maxTokens) {
      // onText makes the pool stream the text back as it comes, as it does for a streamed request.
      const r = await pool.generate('bench', { kind: 'chat', messages: [{ role: 'user', content: PROMPT }] }, { max_tokens: maxTokens, temperature: 0.8, seed }, { onText: () => {} });
      return r.usage.completion_tokens;
    },
    close: () => pool.close(),
  };
}

/** The same generations streamed over POST /v1/chat/completions (SSE) from a server in this process, on one keep-alive connection as OpenAI clients keep theirs. */
async function sseSide(dataDir: string, modelPath: string): Promise<StreamSide> {
  const opts = { flags: { mode: 'http', port: 0, data_dir: dataDir, log_level: 'silent', models: [modelPath] }, env: {} };
  const server = await startServer(new ConfigStore(loadConfig(opts), opts), quietLog());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const port = Number(new URL(server.context.facts.listeners['http']!).port);
  return {
    generate(seed, maxTokens) {
      const body = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: PROMPT }], max_tokens: maxTokens, temperature: 0.8, seed, stream: true, stream_options: { include_usage: true } });
      return sseChat(port, body, agent);
    },
    async close() {
      agent.destroy();
      await server.stop();
    },
  };
}

function sseChat(port: number, body: string, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const counter = new SseTokenCounter();
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, agent }, (res) => {
      res.on('data', (d: Buffer) => counter.push(d));
      res.on('end', () => (counter.done && res.statusCode === 200 ? resolve(counter.tokens) : reject(new Error(`SSE stream failed: ${res.statusCode} ${counter.error?.message ?? ''}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Tokens/s of each side over `rounds` rounds of `streams` generations, one stream at a time. The sides take
 * turns stream by stream (same seed, so the same tokens), so the shared machine's drift hits both alike.
 */
async function streamRates(sides: StreamSide[], rounds: number, streams: number, maxTokens: number): Promise<number[][]> {
  for (const side of sides) for (let i = 0; i < WARMUP; i++) await side.generate(i, 32);
  const rates: number[][] = sides.map(() => []);
  for (let r = 0; r < rounds; r++) {
    const tokens = sides.map(() => 0);
    const seconds = sides.map(() => 0);
    for (let i = 0; i < streams; i++) {
      for (let s = 0; s < sides.length; s++) {
        const t0 = performance.now();
        tokens[s]! += await sides[s]!.generate(100 + i, maxTokens);
        seconds[s]! += (performance.now() - t0) / 1000;
      }
    }
    sides.forEach((_, s) => rates[s]!.push(tokens[s]! / seconds[s]!));
  }
  return rates;
}

const pct = (sorted: number[], p: number): number => Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 1000) / 1000;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const connections = arg('connections', 64);
  const seconds = arg('seconds', 3);
  const rounds = arg('rounds', 2);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-http-'));
  const opts = { flags: { mode: 'http', port: 0, data_dir: dataDir, log_level: 'silent' }, env: {} };
  const store = new ConfigStore(loadConfig(opts), opts);
  const server = await startServer(store, Object.assign(Object.create(silentLog), { setLevel() {} }) as RootLog);
  const url = server.context.facts.listeners['http']!;
  const port = Number(new URL(url).port);
  const raw = await startRawHello();

  await load(raw.port, '/hello', connections, 1);
  await load(port, '/v1/health', connections, 1);
  const rawRps: number[] = [];
  const busRps: number[] = [];
  let errors = 0;
  for (let r = 0; r < rounds; r++) {
    const a = await load(raw.port, '/hello', connections, seconds);
    const b = await load(port, '/v1/health', connections, seconds);
    rawRps.push(a.rps);
    busRps.push(b.rps);
    errors += a.errors + b.errors;
  }
  const rawMed = median(rawRps);
  const busMed = median(busRps);
  const ratio = Math.round((busMed / rawMed) * 1000) / 1000;
  const wrkRaw: number[] = [];
  const wrkBus: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = await wrk(raw.port, '/hello', connections, seconds);
    const b = await wrk(port, '/v1/health', connections, seconds);
    if (a === undefined || b === undefined) break;
    wrkRaw.push(a);
    wrkBus.push(b);
  }
  const lat = await wsRoundTrips(server.context.facts.listeners['ws']!, 2000);

  raw.close();
  await server.stop();

  const streams = arg('streams', 8);
  const maxTokens = arg('tokens', 64);
  const sizeAt = process.argv.indexOf('--size');
  const size = (sizeAt > 0 ? process.argv[sizeAt + 1] : 'small') as TestModelSize;
  mkdirSync(path.join(dataDir, 'models'), { recursive: true });
  const modelPath = path.join(dataDir, 'models', 'bench.gguf');
  await writeTestModel(modelPath, { size });
  const sides = [await poolSide(dataDir, modelPath), await sseSide(dataDir, modelPath)];
  const [poolRates, sseRates] = (await streamRates(sides, rounds, streams, maxTokens)) as [number[], number[]];
  for (const side of sides) await side.close();
  rmSync(dataDir, { recursive: true, force: true });
  const poolMed = median(poolRates);
  const sseMed = median(sseRates);
  const sseRatio = Math.round((sseMed / poolMed) * 1000) / 1000;

  const figures: Figure[] = [
    { name: 'raw uWebSockets.js hello-world', value: Math.round(rawMed), unit: 'req/s', notes: `${connections} keep-alive connections, ${rounds} x ${seconds} s` },
    {
      name: 'GET /v1/health through the bus',
      value: Math.round(busMed),
      unit: 'req/s',
      baseline: { name: 'raw uWebSockets.js hello-world', value: Math.round(rawMed) },
      ratio,
      target: '>= 0.75x',
      pass: ratio >= 0.75,
      notes: `same process, same connections; rounds raw ${rawRps.map(Math.round).join('/')} vs bus ${busRps.map(Math.round).join('/')}; errors ${errors}`,
    },
    {
      name: 'SSE chat stream tokens/s (one stream at a time)',
      value: Math.round(sseMed),
      unit: 'tokens/s',
      baseline: { name: 'InferencePool.generate in process', value: Math.round(poolMed) },
      ratio: sseRatio,
      target: '>= 0.97x',
      pass: sseRatio >= 0.97,
      notes: `synthetic ${size} model, ${streams} streams x ${maxTokens} tokens per round, the sides taking turns stream by stream with the same seeds, one keep-alive connection; rounds pool ${poolRates.map(Math.round).join('/')} vs SSE ${sseRates.map(Math.round).join('/')}`,
    },
    ...(wrkRaw.length === 0
      ? []
      : [
          {
            name: 'GET /v1/health through the bus, wrk',
            value: Math.round(median(wrkBus)),
            unit: 'req/s',
            baseline: { name: 'raw uWebSockets.js hello-world, wrk', value: Math.round(median(wrkRaw)) },
            ratio: Math.round((median(wrkBus) / median(wrkRaw)) * 1000) / 1000,
            notes: `wrk -t1 -c${connections} in its own process (lighter than the in-process generator, so the server is pushed harder); rounds raw ${wrkRaw.map(Math.round).join('/')} vs bus ${wrkBus.map(Math.round).join('/')}`,
          } satisfies Figure,
        ]),
    { name: 'WebSocket health round trip (1 in flight)', value: pct(lat, 50), unit: 'ms', p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), notes: `${lat.length} requests, JSON frames` },
  ];
  writeResult({ suite: 'http', title: 'HTTP and WebSocket transport', command: `node dist/bench/http.js --connections ${connections} --seconds ${seconds} --rounds ${rounds} --streams ${streams} --tokens ${maxTokens}`, figures });
  process.stdout.write('| figure | value | unit | baseline | ratio | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|\n');
  for (const f of figures) {
    process.stdout.write(`| ${f.name} | ${f.value} | ${f.unit} | ${f.baseline ? `${f.baseline.value} (${f.baseline.name})` : ''} | ${f.ratio ?? ''} | ${f.p50_ms ?? ''} | ${f.p99_ms ?? ''} |\n`);
  }
  process.stdout.write(JSON.stringify({ suite: 'http', figures }, null, 2) + '\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench/http failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
