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
  /**
   * Rounds of each baseline group: a baseline and what it is compared with run alternately (B S B S ...) and each
   * figure is the median round, so the drift of a shared machine hits both sides alike.
   */
  rounds: number;
  /** Runs only these groups (bus, http, ws, webrtc, native, storage, inference). */
  only?: string[];
  command: string;
  progress: 'auto' | 'off';
  log(message: string): void;
}

export type Runner = (profile: Profile, opts: Partial<LoadOptions>, name?: string) => Promise<{ run?: RunResult; figure: Figure }>;

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
      // Per hop only with one in flight: with more, the mean round trip is mostly queueing.
      if (r && concurrency === 1) figure.notes = [`per hop (mean round trip / ${hops} hops) ${((r.latency.mean_ms / hops) * 1000).toFixed(2)} µs`, figure.notes].filter(Boolean).join('; ');
      figures.push({ ...figure, unit: figure.unit === 'req/s' ? 'round trips/s' : figure.unit });
    }
  }
  return makeResult({ suite: 'bus', title: 'Bus request/reply (issue 2)', command: suite.command, figures, runs });
}

export interface Member {
  profile: Profile;
  opts: Partial<LoadOptions>;
  label: string;
}

export type Measured = { run?: RunResult; figure: Figure };

export interface Alternated {
  /** Each member's median round. */
  median: Measured[];
  /** Each member's value per round (NaN where the round failed). */
  values: number[][];
}

/**
 * Runs the members in turn, `rounds` times over, and keeps each member's median round (by its figure's value);
 * the figure notes the range over the rounds.
 */
export async function alternate(run: Runner, members: Member[], rounds: number): Promise<Alternated> {
  const all: Measured[][] = members.map(() => []);
  for (let r = 0; r < rounds; r++) for (const [i, m] of members.entries()) all[i]!.push(await run(m.profile, m.opts, m.label));
  const ok = (x: Measured): boolean => x.run !== undefined && x.figure.unit !== 'n/a';
  const median = all.map((results) => {
    const good = results.filter(ok).sort((a, b) => a.figure.value - b.figure.value);
    if (good.length === 0) return results[0]!;
    const mid = good[Math.floor((good.length - 1) / 2)]!;
    if (rounds === 1) return mid;
    const failures = results.length - good.length;
    const notes = [
      `median of ${good.length} alternating rounds (${fmt(good[0]!.figure.value)} to ${fmt(good[good.length - 1]!.figure.value)})`,
      failures ? `${failures} round${failures > 1 ? 's' : ''} failed` : '',
      mid.figure.notes,
    ].filter(Boolean).join('; ');
    return { ...mid, figure: { ...mid.figure, notes } };
  });
  return { median, values: all.map((results) => results.map((x) => (ok(x) ? x.figure.value : NaN))) };
}

const fmt = (x: number): string => x.toLocaleString('en-US', { maximumFractionDigits: x >= 100 ? 0 : 1 });

/**
 * A subject beside its baseline. With rounds, the ratio is the median of the per-round ratios: a subject and
 * the baseline run just before it saw the same machine, which the medians of each side alone do not ensure.
 */
export function compared(a: Alternated, subject: number, base: number, target?: { min?: number; text: string }): Figure {
  const s = a.median[subject]!;
  const b = a.median[base]!;
  const f = withBaseline(s.figure, b.run ? b.figure : undefined, target);
  const ratios = a.values[subject]!.map((v, r) => v / a.values[base]![r]!).filter((x) => Number.isFinite(x) && x > 0).sort((x, y) => x - y);
  if (f.ratio === undefined || ratios.length < 2) return f;
  const ratio = Math.round(ratios[Math.floor((ratios.length - 1) / 2)]! * 1000) / 1000;
  const out: Figure = { ...f, ratio, notes: [`ratio: median of ${ratios.length} per-round ratios (${ratios[0]!.toFixed(2)} to ${ratios[ratios.length - 1]!.toFixed(2)})`, f.notes].filter(Boolean).join('; ') };
  if (target?.min !== undefined) out.pass = ratio >= target.min;
  return out;
}

/** Every transport against one server, each beside its baseline; one result (suite `harness`). */
export async function runTransportSuite(target: StartedTarget | Target, suite: SuiteOptions): Promise<BenchResult> {
  const runs: RunResult[] = [];
  const run = makeRunner(target, suite, runs);
  const figures: Figure[] = [];
  const d = { durationS: suite.durationS, warmupS: suite.warmupS };
  const chat = { durationS: suite.durationS * 2, warmupRequests: 1 };
  const rounds = suite.rounds;

  if (want(suite, 'http')) {
    const a = await alternate(run, [
      { profile: baselineUws, opts: { ...d, concurrency: 64 }, label: 'raw uWebSockets.js hello-world (64 connections)' },
      { profile: httpHealth as Profile, opts: { ...d, concurrency: 64 }, label: 'GET /v1/health through the bus (64 connections)' },
    ], rounds);
    figures.push(a.median[0]!.figure, compared(a, 1, 0, { min: 0.75, text: '>= 0.75x raw uWS' }));
  }
  if (want(suite, 'ws')) figures.push((await run(wsRequest as Profile, { ...d, concurrency: 64 }, 'WebSocket health round trip (64 sockets)')).figure);
  if (want(suite, 'webrtc')) {
    const a = await alternate(run, [
      { profile: baselineWrtcEcho as Profile, opts: { ...d, concurrency: 8 }, label: 'raw @roamhq/wrtc echo (8 peers)' },
      { profile: webrtcRequest as Profile, opts: { ...d, concurrency: 8 }, label: 'WebRTC data-channel health round trip (8 peers)' },
    ], rounds);
    const [base, rtc] = a.median;
    figures.push(base!.figure, compared(a, 1, 0));
    if (base!.run && rtc!.run) {
      const delta = Math.round((rtc!.run.latency.p50_ms - base!.run.latency.p50_ms) * 1000) / 1000;
      figures.push({ name: 'WebRTC round trip p50 over raw echo p50', value: delta, unit: 'ms', baseline: { name: 'raw echo p50 ms', value: base!.run.latency.p50_ms }, target: '<= +0.3 ms', pass: delta <= 0.3, notes: 'lower is better; the median rounds above' });
    }
  }
  if (want(suite, 'native')) figures.push((await run(nativeHealth as Profile, { ...d, concurrency: 64 }, 'native messaging health, 64 pipelined on one host')).figure);
  if (want(suite, 'storage')) {
    const w = await run(storageWrite as Profile, { ...d, concurrency: 16 }, 'save_message over WebSocket (16 clients)');
    const r = await run(storageRead as Profile, { ...d, concurrency: 16 }, 'get_history limit 20 over WebSocket (16 clients)');
    figures.push({ ...w.figure, unit: w.figure.unit === 'req/s' ? 'writes/s' : w.figure.unit, target: 'original aimed at 10k/s' }, { ...r.figure, unit: r.figure.unit === 'req/s' ? 'reads/s' : r.figure.unit, target: 'original aimed at 50k/s' });
  }
  if (want(suite, 'inference') && target.model) {
    const single = { ...chat, concurrency: 1 };
    const a = await alternate(run, [
      { profile: baselineLlama as Profile, opts: single, label: 'raw node-llama-cpp, single stream, 1 thread' },
      { profile: httpChatStream as Profile, opts: single, label: 'HTTP SSE chat, single stream' },
      { profile: wsChatStream as Profile, opts: single, label: 'WebSocket chat stream, single stream' },
      { profile: nativeChat as Profile, opts: single, label: 'native messaging chat stream, single stream' },
      { profile: webrtcChatStream as Profile, opts: single, label: 'WebRTC chat stream, single stream' },
    ], rounds);
    const http = a.median[1]!;
    figures.push(a.median[0]!.figure, compared(a, 1, 0, { min: 0.95, text: '>= 0.95x raw' }));
    const four = await run(httpChatStream as Profile, { ...chat, concurrency: 4 }, 'HTTP SSE chat, 4 concurrent streams (aggregate)');
    figures.push(withBaseline(four.figure, http.run ? http.figure : undefined, { text: 'aggregate over single stream' }));
    for (const m of [2, 3, 4]) figures.push(compared(a, m, 0, { min: 0.95, text: '>= 0.95x raw' }));
  }
  const result = makeResult({ suite: 'harness', title: 'Transports through the harness (one run, baselines beside)', command: suite.command, figures, runs });
  if (target.model) result['model'] = target.model.id;
  result['rounds'] = rounds;
  return result;
}
