/** The standard suite: every transport against one started server, each beside its baseline from the same run, as figures with ratios. */
import { busInThread, busWorker } from '../bus.js';
import { baselineLlama, baselineUws, baselineWrtcEcho } from './profiles/baselines.js';
import { httpChatStream, httpHealth } from './profiles/http.js';
import { nativeChat, nativeHealth } from './profiles/native.js';
import { storageRead, storageWrite } from './profiles/storage.js';
import { webrtcChatStream, webrtcRequest } from './profiles/webrtc.js';
import { wsChatStream, wsRequest } from './profiles/ws.js';
import { failedFigure, figureOf, makeResult, withBaseline } from './report.js';
import { runLoad } from './runner.js';
import { noServer, type StartedTarget } from './target.js';
import type { BenchResult, Figure, LoadOptions, Profile, RunResult, Target } from './types.js';

export interface SuiteOptions {
  /** Seconds per request-loop profile (chat profiles run twice as long). */
  durationS: number;
  warmupS: number;
  /** Runs only these groups (bus, http, ws, webrtc, native, storage, inference). */
  only?: string[];
  command: string;
  progress: 'auto' | 'off';
  log(message: string): void;
}

type Runner = (profile: Profile, opts: Partial<LoadOptions>, name?: string) => Promise<{ run?: RunResult; figure: Figure }>;

function makeRunner(target: Target, suite: SuiteOptions, runs: RunResult[]): Runner {
  return async (profile, opts, name) => {
    const label = name ?? `${profile.name} (${opts.concurrency ?? profile.defaults?.concurrency} clients)`;
    try {
      const run = await runLoad(profile, profile.needs?.server === false ? { ...noServer(), ...(target.model ? { model: target.model } : {}) } : target, { progress: suite.progress, ...opts }, { label });
      runs.push(run);
      const figure = figureOf(run, label);
      if (run.ok === 0) return { run, figure: { ...figure, value: 0, unit: 'n/a', notes: `every request failed: ${Object.entries(run.error_samples).map(([c, m]) => `${c} ${m}`).join('; ') || JSON.stringify(run.errors)}` } };
      return { run, figure };
    } catch (err) {
      suite.log(`${label}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      return { figure: failedFigure(label, err) };
    }
  };
}

const want = (suite: SuiteOptions, group: string): boolean => !suite.only || suite.only.includes(group);

/** The bus benchmark of issue 2: round trips/s and per-hop latency, in-thread and across a worker thread. */
export async function runBusSuite(suite: SuiteOptions): Promise<BenchResult> {
  const runs: RunResult[] = [];
  const run = makeRunner(noServer(), suite, runs);
  const figures: Figure[] = [];
  const d = { durationS: suite.durationS, warmupS: suite.warmupS };
  for (const [profile, hops, where] of [
    [busInThread, 2, 'in-thread'],
    [busWorker, 6, 'across a worker thread'],
  ] as const) {
    for (const concurrency of [1, 64]) {
      const { run: r, figure } = await run(profile as Profile, { ...d, concurrency }, `bus ${where}, ${concurrency} in flight`);
      if (r) figure.notes = [`round trip p50 ${r.latency.p50_ms} ms; per hop (mean / ${hops} hops) ${((r.latency.mean_ms / hops) * 1000).toFixed(2)} µs`, figure.notes].filter(Boolean).join('; ');
      figures.push({ ...figure, unit: figure.unit === 'req/s' ? 'round trips/s' : figure.unit });
    }
  }
  return makeResult({ suite: 'bus', title: 'Bus request/reply (issue 2)', command: suite.command, figures, runs });
}

/** Every transport against one server, each beside its baseline; one result (suite `harness`). */
export async function runTransportSuite(target: StartedTarget | Target, suite: SuiteOptions): Promise<BenchResult> {
  const runs: RunResult[] = [];
  const run = makeRunner(target, suite, runs);
  const figures: Figure[] = [];
  const d = { durationS: suite.durationS, warmupS: suite.warmupS };
  const chat = { durationS: suite.durationS * 2, warmupRequests: 1 };

  if (want(suite, 'http')) {
    const base = await run(baselineUws, { ...d, concurrency: 64 }, 'raw uWebSockets.js hello-world (64 connections)');
    const health = await run(httpHealth as Profile, { ...d, concurrency: 64 }, 'GET /v1/health through the bus (64 connections)');
    figures.push(base.figure, withBaseline(health.figure, base.run ? base.figure : undefined, { min: 0.75, text: '>= 0.75x raw uWS' }));
  }
  if (want(suite, 'ws')) figures.push((await run(wsRequest as Profile, { ...d, concurrency: 64 }, 'WebSocket health round trip (64 sockets)')).figure);
  if (want(suite, 'webrtc')) {
    const base = await run(baselineWrtcEcho as Profile, { ...d, concurrency: 8 }, 'raw @roamhq/wrtc echo (8 peers)');
    const rtc = await run(webrtcRequest as Profile, { ...d, concurrency: 8 }, 'WebRTC data-channel health round trip (8 peers)');
    figures.push(base.figure, rtc.figure);
    if (base.run && rtc.run) {
      const delta = Math.round((rtc.run.latency.p50_ms - base.run.latency.p50_ms) * 1000) / 1000;
      figures.push({ name: 'WebRTC round trip p50 over raw echo p50', value: delta, unit: 'ms', baseline: { name: 'raw echo p50 ms', value: base.run.latency.p50_ms }, target: '<= +0.3 ms', pass: delta <= 0.3 });
    }
  }
  if (want(suite, 'native')) figures.push((await run(nativeHealth as Profile, { ...d, concurrency: 64 }, 'native messaging health, 64 pipelined on one host')).figure);
  if (want(suite, 'storage')) {
    const w = await run(storageWrite as Profile, { ...d, concurrency: 16 }, 'save_message over WebSocket (16 clients)');
    const r = await run(storageRead as Profile, { ...d, concurrency: 16 }, 'get_history limit 20 over WebSocket (16 clients)');
    figures.push({ ...w.figure, unit: w.figure.unit === 'req/s' ? 'writes/s' : w.figure.unit, target: 'original aimed at 10k/s' }, { ...r.figure, unit: r.figure.unit === 'req/s' ? 'reads/s' : r.figure.unit, target: 'original aimed at 50k/s' });
  }
  if (want(suite, 'inference') && target.model) {
    const raw = await run(baselineLlama as Profile, { ...chat, concurrency: 1 }, 'raw node-llama-cpp, single stream, 1 thread');
    const baseFig = raw.run ? raw.figure : undefined;
    figures.push(raw.figure);
    const single = await run(httpChatStream as Profile, { ...chat, concurrency: 1 }, 'HTTP SSE chat, single stream');
    figures.push(withBaseline(single.figure, baseFig, { min: 0.95, text: '>= 0.95x raw' }));
    const four = await run(httpChatStream as Profile, { ...chat, concurrency: 4 }, 'HTTP SSE chat, 4 concurrent streams (aggregate)');
    figures.push(withBaseline(four.figure, single.run ? single.figure : undefined, { text: 'aggregate over single stream' }));
    for (const [p, label] of [
      [wsChatStream, 'WebSocket chat stream, single stream'],
      [nativeChat, 'native messaging chat stream, single stream'],
      [webrtcChatStream, 'WebRTC chat stream, single stream'],
    ] as const) {
      figures.push(withBaseline((await run(p as Profile, { ...chat, concurrency: 1 }, label)).figure, baseFig, { min: 0.95, text: '>= 0.95x raw' }));
    }
  }
  const result = makeResult({ suite: 'harness', title: 'Transports through the harness (one run, baselines beside)', command: suite.command, figures, runs });
  if (target.model) result['model'] = target.model.id;
  return result;
}
