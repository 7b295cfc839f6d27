/** Soak: minutes of mixed open-loop load on one server while its RSS and open file descriptors are sampled; reports the slopes and flags growth. */
import { performance } from 'node:perf_hooks';
import { linearRegression, readProc, type ProcSample } from './monitor.js';
import { httpChatStream, httpHealth } from './profiles/http.js';
import { nativeHealth } from './profiles/native.js';
import { storageRead, storageWrite } from './profiles/storage.js';
import { webrtcRequest } from './profiles/webrtc.js';
import { wsRequest } from './profiles/ws.js';
import { figureOf, makeResult } from './report.js';
import { runLoad } from './runner.js';
import type { BenchResult, Figure, Profile, RunResult, Target } from './types.js';

export interface SoakOptions {
  minutes: number;
  /** Multiplies every stream's arrival rate. */
  rateScale: number;
  sampleMs: number;
  command: string;
  log(message: string): void;
}

/** The mix: each profile at its own open-loop rate (per second, before rateScale). */
export const soakMix: { profile: Profile; rate: number; clients: number; needsModel?: boolean }[] = [
  { profile: httpHealth as Profile, rate: 200, clients: 8 },
  { profile: wsRequest as Profile, rate: 200, clients: 8 },
  { profile: storageWrite as Profile, rate: 50, clients: 4 },
  { profile: storageRead as Profile, rate: 50, clients: 4 },
  { profile: webrtcRequest as Profile, rate: 50, clients: 2 },
  { profile: nativeHealth as Profile, rate: 50, clients: 8 },
  { profile: httpChatStream as Profile, rate: 0.5, clients: 2, needsModel: true },
];

export interface Trend {
  slope_per_min: number;
  r2: number;
  first: number;
  last: number;
  mean: number;
  growing: boolean;
}

/**
 * Growth = a fitted rise over the run that is both real (R² >= 0.5) and material: more than 10% of the mean
 * RSS, or more than 8 file descriptors. The first fifth of the samples is warm-up (caches, JIT) and is left out.
 */
export function trend(samples: ProcSample[], pick: (s: ProcSample) => number | undefined, materialRise: (mean: number) => number): Trend | undefined {
  const start = samples[0]?.t ?? 0;
  const pts = samples.slice(Math.floor(samples.length / 5)).flatMap((s) => {
    const y = pick(s);
    return y === undefined ? [] : [{ x: (s.t - start) / 60_000, y }];
  });
  if (pts.length < 3) return undefined;
  const { slope, r2 } = linearRegression(pts);
  const mean = pts.reduce((a, p) => a + p.y, 0) / pts.length;
  const span = pts[pts.length - 1]!.x - pts[0]!.x;
  return { slope_per_min: slope, r2: Math.round(r2 * 1000) / 1000, first: pts[0]!.y, last: pts[pts.length - 1]!.y, mean, growing: r2 >= 0.5 && slope * span > materialRise(mean) };
}

export async function runSoak(target: Target, opts: SoakOptions): Promise<BenchResult> {
  if (target.pid === undefined) throw new Error('soak needs the server pid to read /proc (a server the harness starts, or a --url server on this machine)');
  const durationS = opts.minutes * 60;
  const mix = soakMix.filter((m) => !m.needsModel || target.model);
  // Samples count only while every stream of the mix is measuring: client setup and teardown open and close
  // sockets and peers, which would read as a trend in the fd count.
  let expected = mix.length;
  const measuring = new Set<Profile>();
  const samples: ProcSample[] = [];
  const t0 = performance.now();
  const sampler = setInterval(() => {
    const s = readProc(target.pid!);
    const steady = expected > 0 && measuring.size === expected;
    if (s && steady) samples.push(s);
    const last = s ?? samples[samples.length - 1];
    if (last) opts.log(`soak ${((performance.now() - t0) / 1000).toFixed(0)}/${durationS}s  RSS ${(last.rss_bytes / 1048576).toFixed(1)} MiB  fds ${last.fds ?? '?'}${steady ? '' : '  (streams starting or stopping: not sampled)'}`);
  }, opts.sampleMs);
  const runs: RunResult[] = [];
  const failed: Figure[] = [];
  await Promise.all(
    mix.map(async (m) => {
      try {
        runs.push(await runLoad(m.profile, target, { mode: 'open', rate: m.rate * opts.rateScale, concurrency: m.clients, durationS, timeoutMs: 30_000, progress: 'off' }, { onTick: () => measuring.add(m.profile) }));
        // The first stream to finish ends the steady window for good.
        expected = -1;
      } catch (err) {
        // A stream that never started (setup failed) is left out; one that failed later ends the window.
        if (measuring.has(m.profile)) expected = -1;
        else if (expected > 0) expected--;
        opts.log(`soak: ${m.profile.name} left out: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
        failed.push({ name: `${m.profile.name} (left out of the mix)`, value: 0, unit: 'n/a', notes: String(err instanceof Error ? err.message.split('\n')[0] : err) });
      }
    }),
  );
  clearInterval(sampler);
  const rss = trend(samples, (s) => s.rss_bytes, (mean) => mean * 0.1);
  const fds = trend(samples, (s) => s.fds, () => 8);
  const figures: Figure[] = [];
  const windowMin = samples.length > 1 ? (samples[samples.length - 1]!.t - samples[0]!.t) / 60_000 : 0;
  if (!rss || !fds) figures.push({ name: 'server RSS and fd slopes', value: 0, unit: 'n/a', notes: `only ${samples.length} samples while every stream ran: run longer (--minutes)` });
  if (rss)
    figures.push({
      name: 'server RSS slope',
      value: Math.round((rss.slope_per_min / 1048576) * 1000) / 1000,
      unit: 'MiB/min',
      target: 'flat (no material rise with R² >= 0.5)',
      pass: !rss.growing,
      notes: `${(rss.first / 1048576).toFixed(1)} -> ${(rss.last / 1048576).toFixed(1)} MiB, R² ${rss.r2}, ${samples.length} samples over ${windowMin.toFixed(1)} min of steady load (first fifth left out as warm-up)`,
    });
  if (fds)
    figures.push({
      name: 'server open fds slope',
      value: Math.round(fds.slope_per_min * 1000) / 1000,
      unit: 'fds/min',
      target: 'flat',
      pass: !fds.growing,
      notes: `${fds.first} -> ${fds.last} fds, R² ${fds.r2}`,
    });
  for (const r of runs) figures.push(figureOf(r));
  figures.push(...failed);
  const result = makeResult({ suite: 'soak', title: `Soak: ${opts.minutes} min of mixed load`, command: opts.command, figures, runs });
  result['samples'] = samples.map((s) => ({ t: s.t, rss_bytes: s.rss_bytes, fds: s.fds }));
  result['trend'] = { rss, fds };
  return result;
}
