/** The load loops: closed (N clients, each sends again when answered) and open (fixed arrival rate, latency from the intended send time). */
import { performance } from 'node:perf_hooks';
import { LatencyHistogram, summarise } from './histogram.js';
import { ServerMonitor } from './monitor.js';
import { Progress } from './progress.js';
import type { LoadOptions, Outcome, Profile, RunResult, Target } from './types.js';

export const defaultLoad: LoadOptions = { mode: 'closed', concurrency: 16, timeoutMs: 30_000, progress: 'auto' };

/** A run needs an end: a request count or a duration; 5 s when neither is given. */
const DEFAULT_DURATION_S = 5;
/** Open loop: arrivals not yet sent beyond this are refused (the generator must not grow without bound). */
const MAX_BACKLOG = 1_000_000;

interface Slot<C> {
  client: C;
  index: number;
}

interface InFlight {
  start: number;
  done: boolean;
  finish(o: Outcome): void;
}

class Recorder {
  readonly latency = new LatencyHistogram();
  readonly ttft = new LatencyHistogram();
  readonly errors: Record<string, number> = {};
  readonly samples: Record<string, string> = {};
  completed = 0;
  ok = 0;
  tokens = 0;
  bytes = 0;
  delayed = 0;
  /** For the progress line: a histogram of the last interval. */
  readonly recent = new LatencyHistogram();

  record(o: Outcome, ms: number): void {
    this.completed++;
    this.latency.record(ms);
    this.recent.record(ms);
    if (o.ok) this.ok++;
    else {
      const code = o.code ?? 'ERROR';
      this.errors[code] = (this.errors[code] ?? 0) + 1;
      if (o.message && !(code in this.samples)) this.samples[code] = o.message.slice(0, 300);
    }
    if (o.tokens) this.tokens += o.tokens;
    if (o.bytes) this.bytes += o.bytes;
    if (o.ttftMs !== undefined) this.ttft.record(o.ttftMs);
  }

  get errorCount(): number {
    return this.completed - this.ok;
  }
}

function errorOutcome(err: unknown): Outcome {
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'EXCEPTION';
  return { ok: false, code, message: err instanceof Error ? err.message : String(err) };
}

/** Runs one phase (warm-up or measured) of a profile over already set-up slots. */
class Phase<C> {
  private readonly inflight = new Set<InFlight>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly replaced = new Set<Slot<C>>();

  constructor(
    private readonly profile: Profile<C>,
    private readonly target: Target,
    private readonly opts: LoadOptions,
    readonly rec: Recorder,
  ) {
    // One timer for every in-flight request: a timer per request would cost more than a health round trip.
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (const f of this.inflight) if (now - f.start > this.opts.timeoutMs) f.finish({ ok: false, code: 'TIMEOUT', message: `no reply in ${this.opts.timeoutMs} ms` });
    }, Math.min(100, Math.max(5, this.opts.timeoutMs / 4)));
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  /** Sends one request; resolves with its outcome (never rejects). A timed-out slot gets a fresh client. */
  async send(slot: Slot<C>, seq: number, sentAt: number): Promise<Outcome> {
    let outcome: Outcome;
    outcome = await new Promise<Outcome>((resolve) => {
      const f: InFlight = {
        start: sentAt,
        done: false,
        finish: (o) => {
          if (f.done) return;
          f.done = true;
          this.inflight.delete(f);
          resolve(o);
        },
      };
      this.inflight.add(f);
      let p: Promise<Outcome>;
      try {
        p = this.profile.request(slot.client, seq);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(f.finish, (err: unknown) => f.finish(errorOutcome(err)));
    });
    if (outcome.code === 'TIMEOUT' && !this.profile.sharedClient && !this.replaced.has(slot)) await this.replace(slot);
    return outcome;
  }

  /** A client whose request timed out may hold a stuck connection: tear it down and set up a new one. */
  private async replace(slot: Slot<C>): Promise<void> {
    this.replaced.add(slot);
    const old = slot.client;
    void this.profile.teardown?.(old).catch(() => {});
    try {
      slot.client = await this.profile.setup(this.target, slot.index);
    } catch {
      // Keep the old client; later requests report their own errors.
    }
    this.replaced.delete(slot);
  }
}

export interface RunHooks {
  /** Called once per second with the running recorder (the soak mode samples here). */
  onTick?: (elapsedS: number) => void;
  /** Overrides the label of the progress line. */
  label?: string;
}

/** Sets up the clients, warms up, measures, tears down. Throws (naming the profile) only if setup fails. */
export async function runLoad<C>(profile: Profile<C>, given: Target, options: Partial<LoadOptions> = {}, hooks: RunHooks = {}): Promise<RunResult> {
  if (!profile.own) return runOn(profile, given, options, hooks);
  const own = await profile.own(given);
  try {
    const target: Target = given.model ? { ...own.target, model: given.model } : own.target;
    return await runOn(profile, target, options, hooks);
  } finally {
    await own.stop();
  }
}

async function runOn<C>(profile: Profile<C>, target: Target, options: Partial<LoadOptions>, hooks: RunHooks): Promise<RunResult> {
  const opts: LoadOptions = { ...defaultLoad, ...profile.defaults, ...stripUndefined(options) };
  if (opts.mode === 'open' && !(opts.rate && opts.rate > 0)) throw new Error(`${profile.name}: open loop needs --rate (arrivals per second)`);
  if (opts.requests === undefined && opts.durationS === undefined) opts.durationS = DEFAULT_DURATION_S;
  const clientCount = profile.sharedClient ? 1 : opts.concurrency;
  const slots: Slot<C>[] = [];
  try {
    // Set up in small batches: some clients (WebRTC peers, native hosts) are costly to start all at once.
    for (let i = 0; i < clientCount; i += 8) {
      const batch = [];
      for (let j = i; j < Math.min(clientCount, i + 8); j++) batch.push(profile.setup(target, j).then((client) => ({ client, index: j })));
      slots.push(...(await Promise.all(batch)));
    }
  } catch (err) {
    await Promise.all(slots.map((s) => profile.teardown?.(s.client).catch(() => {})));
    throw new Error(`${profile.name}: setup failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const progress = new Progress(opts.progress !== 'off');
  const label = hooks.label ?? profile.name;
  try {
    if ((opts.warmupS ?? 0) > 0 || (opts.warmupRequests ?? 0) > 0) {
      const warm: LoadOptions = { ...opts };
      delete warm.requests;
      delete warm.durationS;
      if (opts.warmupRequests) warm.requests = opts.warmupRequests;
      else warm.durationS = opts.warmupS!;
      await phase(profile, target, slots, warm, progress, `${label} (warm-up)`, {});
    }
    const monitor = target.pid !== undefined || (target.started === false && profile.needs?.server !== false)
      ? new ServerMonitor(target.pid !== undefined ? { pid: target.pid } : { url: target.url })
      : undefined;
    monitor?.start();
    const cpu = process.cpuUsage();
    const { rec, elapsedS } = await phase(profile, target, slots, opts, progress, label, hooks);
    const used = process.cpuUsage(cpu);
    await monitor?.stop();
    return toResult(profile, opts, rec, elapsedS, { peakRss: monitor?.peak, serverCpuS: monitor?.cpuSeconds, generatorCpuS: (used.user + used.system) / 1e6 });
  } finally {
    progress.end();
    await Promise.all(slots.map((s) => profile.teardown?.(s.client).catch(() => {})));
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function phase<C>(
  profile: Profile<C>,
  target: Target,
  slots: Slot<C>[],
  opts: LoadOptions,
  progress: Progress,
  label: string,
  hooks: RunHooks,
): Promise<{ rec: Recorder; elapsedS: number }> {
  const rec = new Recorder();
  const runner = new Phase(profile, target, opts, rec);
  const start = performance.now();
  const endAt = opts.durationS !== undefined ? start + opts.durationS * 1000 : Infinity;
  let lastTick = start;
  let lastDone = 0;
  let ticks = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    progress.update({
      label,
      elapsedS: (now - start) / 1000,
      done: rec.completed,
      intervalRps: ((rec.completed - lastDone) * 1000) / (now - lastTick),
      errors: rec.errorCount,
      p99Ms: rec.recent.percentile(99),
      inFlight: runner.inFlight,
    });
    rec.recent.reset();
    lastTick = now;
    lastDone = rec.completed;
    ticks++;
    hooks.onTick?.(ticks);
  }, 1000);
  try {
    if (opts.mode === 'closed') await closedLoop(runner, slots, opts, endAt, profile.sharedClient === true);
    else await openLoop(runner, slots, opts, start, endAt, profile.sharedClient === true);
  } finally {
    clearInterval(ticker);
    runner.stop();
  }
  return { rec, elapsedS: (performance.now() - start) / 1000 };
}

/** N workers; each sends its next request as soon as its previous one is answered. Exactly `requests` are sent when given. */
async function closedLoop<C>(runner: Phase<C>, slots: Slot<C>[], opts: LoadOptions, endAt: number, shared: boolean): Promise<void> {
  const limit = opts.requests ?? Infinity;
  let issued = 0;
  const worker = async (w: number): Promise<void> => {
    const slot = shared ? slots[0]! : slots[w]!;
    while (issued < limit && performance.now() < endAt) {
      const seq = issued++;
      const t0 = performance.now();
      const o = await runner.send(slot, seq, t0);
      runner.rec.record(o, performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
}

/**
 * Arrivals at a fixed rate: arrival i is due at start + i/rate. Due arrivals are sent on free clients
 * (at most `concurrency` in flight); the rest wait. Latency counts from the due time, not the send time,
 * so a stalled server shows its full queueing delay (no coordinated omission).
 */
async function openLoop<C>(runner: Phase<C>, slots: Slot<C>[], opts: LoadOptions, start: number, endAt: number, shared: boolean): Promise<void> {
  const rate = opts.rate!;
  const limit = opts.requests ?? Infinity;
  const interval = 1000 / rate;
  const free: Slot<C>[] = shared ? Array.from({ length: opts.concurrency }, () => slots[0]!) : [...slots];
  const backlog: { seq: number; due: number }[] = [];
  let head = 0;
  let scheduled = 0;
  let outstanding = 0;
  let finished = false;
  let wake: (() => void) | undefined;

  const dispatch = (): void => {
    while (head < backlog.length && free.length > 0) {
      const { seq, due } = backlog[head++]!;
      const slot = free.pop()!;
      const now = performance.now();
      if (now - due > Math.max(1, interval)) runner.rec.delayed++;
      outstanding++;
      void runner.send(slot, seq, due).then((o) => {
        runner.rec.record(o, performance.now() - due);
        outstanding--;
        free.push(slot);
        dispatch();
        if (finished && outstanding === 0 && head >= backlog.length) wake?.();
      });
    }
    if (head > 4096 && head * 2 > backlog.length) {
      backlog.splice(0, head);
      head = 0;
    }
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const dueCount = Math.min(limit, Math.floor((Math.min(now, endAt) - start) / interval) + 1);
      while (scheduled < dueCount) {
        const due = start + scheduled * interval;
        if (backlog.length - head >= MAX_BACKLOG) runner.rec.record({ ok: false, code: 'BACKLOG', message: `more than ${MAX_BACKLOG} arrivals waiting for a free client` }, now - due);
        else backlog.push({ seq: scheduled, due });
        scheduled++;
      }
      dispatch();
      if (scheduled >= limit || now >= endAt) {
        finished = true;
        if (outstanding === 0 && head >= backlog.length) resolve();
        else wake = resolve;
        return;
      }
      // setTimeout(1) wakes every ~1 ms; arrivals due meanwhile go out together with their own due times.
      setTimeout(tick, Math.max(0, Math.min(1, start + scheduled * interval - performance.now())));
    };
    tick();
  });
}

interface ProcessUse {
  peakRss: number | undefined;
  serverCpuS: number | undefined;
  generatorCpuS: number;
}

function toResult<C>(profile: Profile<C>, opts: LoadOptions, rec: Recorder, elapsedS: number, use: ProcessUse): RunResult {
  const r: RunResult = {
    profile: profile.name,
    transport: profile.transport,
    description: profile.description,
    mode: opts.mode,
    concurrency: opts.concurrency,
    requests: rec.completed,
    ok: rec.ok,
    errors: rec.errors,
    error_samples: rec.samples,
    duration_s: round(elapsedS, 3),
    throughput_rps: round(rec.completed / elapsedS, 1),
    latency: summarise(rec.latency),
    generator_cpu_pct: round((use.generatorCpuS / elapsedS) * 100, 1),
    generator_rss_bytes: process.memoryUsage.rss(),
  };
  if (opts.mode === 'open') {
    r.rate = opts.rate!;
    r.delayed_sends = rec.delayed;
  }
  if (rec.tokens > 0) {
    r.tokens = rec.tokens;
    r.tokens_per_s = round(rec.tokens / elapsedS, 1);
  }
  if (rec.ttft.count > 0) r.ttft = summarise(rec.ttft);
  if (rec.bytes > 0) {
    r.bytes = rec.bytes;
    r.mb_per_s = round(rec.bytes / 1e6 / elapsedS, 2);
  }
  if (use.peakRss !== undefined) r.server_peak_rss_bytes = use.peakRss;
  if (use.serverCpuS !== undefined) r.server_cpu_pct = round((use.serverCpuS / elapsedS) * 100, 1);
  return r;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
