import t from 'tap';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { HttpConnection, errorCode } from '../../bench/harness/clients/http.js';
import { LatencyHistogram } from '../../bench/harness/histogram.js';
import { linearRegression } from '../../bench/harness/monitor.js';
import { SseTokenCounter } from '../../bench/harness/profiles/http.js';
import { figureOf, readResults, writeBenchmarks, writeResult } from '../../bench/harness/report.js';
import { runLoad } from '../../bench/harness/runner.js';
import { trend } from '../../bench/harness/soak.js';
import { alternate, compared } from '../../bench/harness/suite.js';
import { noServer } from '../../bench/harness/target.js';
import type { BenchResult, Outcome, Profile, Target } from '../../bench/harness/types.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli.js');

/** Runs `tabagent bench ARGS` (the compiled CLI) and collects its exit code, stdout and stderr. */
function tabagentBench(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A tiny local server: /ok, /busy (503 problem+json BUSY), /missing (404), /sse (chunked SSE of 5 tokens). */
async function localServer(t: { teardown(fn: () => unknown): void }): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    if (req.url === '/ok') res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
    else if (req.url === '/busy') res.writeHead(503, { 'Content-Type': 'application/problem+json' }).end('{"type":"about:blank","status":503,"code":"BUSY","title":"busy"}');
    else if (req.url === '/sse') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      let i = 0;
      const tick = (): void => {
        if (i < 5) {
          res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: `t${i}` } }] })}\n\n`);
          i++;
          setImmediate(tick);
        } else {
          res.write(`data: ${JSON.stringify({ choices: [], usage: { completion_tokens: 5 } })}\n\n`);
          res.end('data: [DONE]\n\n');
        }
      };
      tick();
    } else res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return { url: `http://127.0.0.1:${port}`, hits: () => hits };
}

function target(url: string): Target {
  return { ...noServer(), url, started: true };
}

/** A GET profile over the harness's own keep-alive client; setup sends nothing. */
function getProfile(pathFor: (seq: number) => string): Profile<HttpConnection> {
  return {
    name: 'test-get',
    transport: 'http',
    description: 'test',
    async setup(tg) {
      return HttpConnection.fromUrl(tg.url);
    },
    async request(conn, seq): Promise<Outcome> {
      const res = await conn.request({ method: 'GET', path: pathFor(seq) });
      return res.status === 200 ? { ok: true, bytes: res.bytes } : { ok: false, code: errorCode(res) };
    },
    async teardown(conn) {
      conn.close();
    },
  };
}

t.test('histogram percentiles are within 0.1% and the summary is in ms', async (t) => {
  const h = new LatencyHistogram();
  for (let ms = 1; ms <= 1000; ms++) h.record(ms);
  const s = h.summary();
  t.equal(s.count, 1000);
  t.ok(Math.abs(s.p50_ms - 500) <= 0.5, `p50 ${s.p50_ms}`);
  t.ok(Math.abs(s.p90_ms - 900) <= 0.9, `p90 ${s.p90_ms}`);
  t.ok(Math.abs(s.p99_ms - 990) <= 1, `p99 ${s.p99_ms}`);
  t.ok(Math.abs(s.p99_9_ms - 999) <= 1, `p99.9 ${s.p99_9_ms}`);
  t.ok(Math.abs(s.max_ms - 1000) <= 1, `max ${s.max_ms}`);
  t.ok(Math.abs(s.mean_ms - 500.5) <= 0.5, `mean ${s.mean_ms}`);
  const one = new LatencyHistogram();
  one.record(88.93);
  t.equal(one.summary().p99_9_ms, one.summary().max_ms, 'no percentile above the largest value recorded');
  const sub = new LatencyHistogram();
  sub.record(0.0004);
  sub.record(0.25);
  t.equal(sub.summary().max_ms, 0.25, 'sub-millisecond values keep microsecond resolution');
  t.same(new LatencyHistogram().summary(), { count: 0, mean_ms: 0, p50_ms: 0, p90_ms: 0, p99_ms: 0, p99_9_ms: 0, max_ms: 0 }, 'an empty histogram summarises to zeros');
});

t.test('closed loop with a request count sends exactly that many', async (t) => {
  const srv = await localServer(t);
  const r = await runLoad(getProfile(() => '/ok'), target(srv.url), { concurrency: 8, requests: 137, progress: 'off' });
  t.equal(r.requests, 137);
  t.equal(r.ok, 137);
  t.equal(srv.hits(), 137, 'the server saw exactly 137 requests');
  t.same(r.errors, {});
  t.equal(r.latency.count, 137);
  t.ok(r.throughput_rps > 0);
  t.ok(r.bytes! > 0);
});

t.test('warm-up requests are sent but not measured', async (t) => {
  const srv = await localServer(t);
  const r = await runLoad(getProfile(() => '/ok'), target(srv.url), { concurrency: 4, requests: 20, warmupRequests: 10, progress: 'off' });
  t.equal(r.requests, 20);
  t.equal(srv.hits(), 30);
});

t.test('open loop sends at the rate, never early', async (t) => {
  const srv = await localServer(t);
  const sends: number[] = [];
  const p = getProfile(() => '/ok');
  const inner = p.request;
  p.request = (c, seq) => {
    sends.push(performance.now());
    return inner(c, seq);
  };
  const r = await runLoad(p, target(srv.url), { mode: 'open', rate: 200, requests: 40, concurrency: 4, progress: 'off' });
  t.equal(r.requests, 40);
  t.equal(r.ok, 40);
  t.equal(r.rate, 200);
  const span = sends[sends.length - 1]! - sends[0]!;
  // 40 arrivals at 200/s are due over 195 ms: sending them all at once would be a closed loop.
  t.ok(span >= 195 * 0.9, `sends spread over ${span.toFixed(0)} ms`);
});

t.test('open loop counts latency from the intended send time (coordinated omission)', async (t) => {
  let maxService = 0;
  const slow: Profile<null> = {
    name: 'slow',
    transport: 'http',
    description: 'one client, 40 ms per request',
    async setup() {
      return null;
    },
    async request() {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 40));
      maxService = Math.max(maxService, performance.now() - t0);
      return { ok: true };
    },
  };
  // 100 arrivals/s on one client that serves 25/s: the queue grows, and so must the measured latency.
  const r = await runLoad(slow, noServer(), { mode: 'open', rate: 100, requests: 20, concurrency: 1, progress: 'off' });
  t.equal(r.requests, 20);
  t.ok(r.delayed_sends! > 10, `${r.delayed_sends} sends waited for a free client`);
  t.ok(r.latency.max_ms > 3 * maxService, `max latency ${r.latency.max_ms} ms includes queueing; a service took at most ${maxService.toFixed(0)} ms`);
  const closed = await runLoad(slow, noServer(), { requests: 5, concurrency: 1, progress: 'off' });
  t.ok(closed.latency.max_ms <= maxService + 20, 'a closed loop measures service time only');
});

t.test('a failing profile reports errors by code, with samples', async (t) => {
  const srv = await localServer(t);
  const r = await runLoad(getProfile((seq) => (seq % 3 === 0 ? '/busy' : seq % 3 === 1 ? '/missing' : '/ok')), target(srv.url), { concurrency: 1, requests: 30, progress: 'off' });
  t.equal(r.requests, 30);
  t.equal(r.ok, 10);
  t.same(r.errors, { BUSY: 10, HTTP_404: 10 });
  const thrower: Profile<null> = {
    name: 'thrower',
    transport: 'http',
    description: 'throws, or never answers',
    async setup() {
      return null;
    },
    request(_c, seq) {
      if (seq === 0) return new Promise(() => {});
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    },
  };
  const e = await runLoad(thrower, noServer(), { concurrency: 2, requests: 6, timeoutMs: 100, progress: 'off' });
  t.equal(e.requests, 6);
  t.same(e.errors, { TIMEOUT: 1, ECONNREFUSED: 5 });
  t.match(e.error_samples['ECONNREFUSED'], /ECONNREFUSED 127\.0\.0\.1:1/);
  const bad: Profile<null> = { ...thrower, name: 'no-setup', setup: () => Promise.reject(new Error('no server at all')) };
  await t.rejects(runLoad(bad, noServer(), { requests: 1, progress: 'off' }), /no-setup: setup failed: no server at all/);
});

t.test('the keep-alive client reads chunked SSE and counts tokens', async (t) => {
  const srv = await localServer(t);
  const conn = HttpConnection.fromUrl(srv.url);
  t.teardown(() => conn.close());
  for (let i = 0; i < 3; i++) {
    const counter = new SseTokenCounter();
    const res = await conn.request({ method: 'GET', path: '/sse', onData: (b) => counter.push(b) });
    t.equal(res.status, 200);
    t.equal(counter.done, true);
    t.equal(counter.chunks, 5);
    t.equal(counter.tokens, 5);
  }
  const ok = await conn.request({ method: 'GET', path: '/ok' });
  t.equal(ok.body.toString(), '{"status":"ok"}', 'the same connection carries on after streams');
});

t.test('report: result files become BENCHMARKS.md with the command, date and cores', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const srv = await localServer(t);
  const run = await runLoad(getProfile(() => '/ok'), target(srv.url), { concurrency: 2, requests: 10, progress: 'off' });
  const resultsDir = path.join(dir, 'results');
  writeResult({ suite: 'http', title: 'HTTP transport', command: 'npm run bench -- http-health -n 10', figures: [figureOf(run, 'health'), { name: 'ratio thing', value: 5, unit: 'req/s', baseline: { name: 'raw', value: 10 }, ratio: 0.5, target: '>= 0.75x', pass: false }], runs: [run] }, resultsDir);
  writeResult({ suite: 'native', title: 'Native messaging', command: 'node dist/bench/native.js', date: '2025-01-02T03:04:05.000Z', figures: [{ name: 'cold spawn', value: 120, unit: 'ms' }] }, resultsDir);
  const written = JSON.parse(readFileSync(path.join(resultsDir, 'http.json'), 'utf8'));
  t.equal(written.schema, 'tabagent-bench/1');
  t.equal(written.host.cores, os.availableParallelism());
  const out = path.join(dir, 'BENCHMARKS.md');
  const r = writeBenchmarks(out, resultsDir);
  t.equal(r.suites, 2);
  const md = readFileSync(out, 'utf8');
  t.match(md, /^# Benchmarks/);
  t.match(md, /Command: `npm run bench -- http-health -n 10`/);
  t.match(md, /Command: `node dist\/bench\/native.js`/);
  t.match(md, new RegExp(`Date: ${written.date.replace(/[.]/g, '\\.')} · ${os.availableParallelism()} cores`));
  t.match(md, /Date: 2025-01-02T03:04:05.000Z/);
  t.match(md, /\| health \| [\d,.]+ req\/s \|/);
  t.match(md, /0\.50x \| >= 0\.75x ❌/);
  t.ok(md.indexOf('## HTTP transport') < md.indexOf('## Native messaging'), 'suites in the documented order');
  t.same(readResults(resultsDir).skipped, []);
});

t.test('soak trend: a steady rise is flagged, noise around a flat line is not', async (t) => {
  const t0 = Date.now();
  const rising = Array.from({ length: 60 }, (_, i) => ({ t: t0 + i * 2000, rss_bytes: 100e6 + i * 1e6, fds: 30 }));
  const flat = Array.from({ length: 60 }, (_, i) => ({ t: t0 + i * 2000, rss_bytes: 100e6 + (i % 2 ? 1e5 : -1e5), fds: 30 + (i % 3) }));
  t.equal(trend(rising, (s) => s.rss_bytes, (m) => m * 0.1)!.growing, true);
  t.equal(trend(flat, (s) => s.rss_bytes, (m) => m * 0.1)!.growing, false);
  t.equal(trend(flat, (s) => s.fds, () => 8)!.growing, false);
  const { slope, r2 } = linearRegression([{ x: 0, y: 1 }, { x: 1, y: 3 }, { x: 2, y: 5 }]);
  t.equal(slope, 2);
  t.equal(r2, 1);
});

t.test('tabagent bench: profiles against a server it starts, a sweep, JSON out, progress on stderr, server stopped', async (t) => {
  t.ok(existsSync(CLI), `${CLI} exists (npm run build)`);
  const r = await tabagentBench(['http-health', 'ws-request', '--server-mode', 'http', '-d', '1.5', '-c', '1,4', '--warmup', '0.2', '--json']);
  t.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout) as BenchResult;
  t.equal(result.schema, 'tabagent-bench/1');
  t.equal(result.host.cores, os.availableParallelism());
  t.same(result.runs!.map((x) => `${x.profile} x${x.concurrency}`), ['http-health x1', 'http-health x4', 'ws-request x1', 'ws-request x4'], 'a -c list sweeps each profile');
  for (const run of result.runs!) {
    t.ok(run.requests > 0, `${run.profile}: ${run.requests} requests`);
    t.equal(run.ok, run.requests, `${run.profile}: every request answered ok`);
    t.same(run.errors, {});
    t.equal(run.latency.count, run.requests);
    t.ok(run.latency.p50_ms <= run.latency.p99_ms && run.latency.p99_ms <= run.latency.max_ms, `${run.profile}: percentiles in order`);
    t.ok(run.server_peak_rss_bytes! > 10 * 1048576, `${run.profile}: server peak RSS ${run.server_peak_rss_bytes} read from /proc`);
    t.ok(run.server_cpu_pct! > 0 && run.generator_cpu_pct > 0, `${run.profile}: CPU server ${run.server_cpu_pct}%, generator ${run.generator_cpu_pct}%`);
  }
  t.match(r.stderr, /^http-health\s+[\d.]+s\s+\d+ done\s+\d+ req\/s\s+p99 [\d.]+ ms/m, 'a progress line on stderr');
  const pid = Number(/server pid (\d+)/.exec(r.stderr)?.[1]);
  t.ok(pid > 0);
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the server it started is gone');
});

t.test('tabagent bench refuses what it cannot do, naming why', async (t) => {
  const remote = await tabagentBench(['http-health', '--url', 'http://10.1.2.3:80']);
  t.equal(remote.code, 1);
  t.match(remote.stderr, /--url must be a loopback address .* got 10\.1\.2\.3/);
  const unknown = await tabagentBench(['http-helth']);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /unknown profile http-helth; known: http-health, /);
  const bad = await tabagentBench(['http-health', '--rate', 'fast']);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /--rate must be a positive number.*; got 'fast'/);
});

t.test('suite rounds: baseline and subject alternate; medians per side, ratio = median of per-round ratios', async (t) => {
  const order: string[] = [];
  // Round r runs on a machine r times slower; the subject is always half the baseline's speed.
  const values: Record<string, number[]> = { base: [1000, 500, 250], subject: [500, 250, 125] };
  const fake = async (profile: Profile, _opts: unknown, label?: string) => {
    order.push(label!);
    const value = values[label!]![order.filter((l) => l === label).length - 1]!;
    return { run: { profile: profile.name } as never, figure: { name: label!, value, unit: 'req/s' } };
  };
  const p = { name: 'p' } as Profile;
  const a = await alternate(fake, [{ profile: p, opts: {}, label: 'base' }, { profile: p, opts: {}, label: 'subject' }], 3);
  t.same(order, ['base', 'subject', 'base', 'subject', 'base', 'subject']);
  t.equal(a.median[0]!.figure.value, 500);
  t.equal(a.median[1]!.figure.value, 250);
  t.match(a.median[1]!.figure.notes, /median of 3 alternating rounds \(125 to 500\)/);
  const f = compared(a, 1, 0, { min: 0.75, text: '>= 0.75x' });
  t.equal(f.ratio, 0.5);
  t.equal(f.pass, false);
  t.same(f.baseline, { name: 'base', value: 500 });
});
