/** Server process sampling: peak RSS, CPU time and open file descriptors from /proc, or the `system` route for a server given by address. */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import type { HostFacts } from './types.js';

export interface ProcSample {
  t: number;
  rss_bytes: number;
  /** VmHWM: the kernel's own peak RSS (only from /proc). */
  hwm_bytes?: number;
  fds?: number;
}

/** Reads VmRSS/VmHWM and the fd count of a local process; undefined when /proc has no such process. */
export function readProc(pid: number): ProcSample | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const sample: ProcSample = { t: Date.now(), rss_bytes: kb('VmRSS') ?? 0 };
  const hwm = kb('VmHWM');
  if (hwm !== undefined) sample.hwm_bytes = hwm;
  try {
    sample.fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    // fds of another user's process are not readable; RSS still is.
  }
  return sample;
}

/** Kernel clock ticks per second for /proc/<pid>/stat times: 100 on every Linux this runs on (USER_HZ). */
const USER_HZ = 100;

/** CPU seconds (user + system, every thread) a local process has used so far; undefined without /proc. */
export function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

/** RSS of a server given by address, through its `system` route (memory.rss_bytes); also returns its pid. */
export async function readSystemRoute(url: string): Promise<{ rss_bytes: number; pid?: number } | undefined> {
  try {
    const res = await fetch(`${url}/v1/system/info`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { pid?: number; memory?: { rss_bytes?: number } };
    const rss = body.memory?.rss_bytes;
    if (typeof rss !== 'number') return undefined;
    return body.pid === undefined ? { rss_bytes: rss } : { rss_bytes: rss, pid: body.pid };
  } catch {
    return undefined;
  }
}

/**
 * Samples a server's memory every interval while a run lasts. With a pid (a local process) it reads
 * /proc; otherwise it asks the server's `system` route. `peak` is the highest RSS seen.
 */
export class ServerMonitor {
  readonly samples: ProcSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private peakRss = 0;
  private cpuAtStart: number | undefined;
  /** CPU seconds the server used between start() and stop() (local processes only). */
  cpuSeconds: number | undefined;

  constructor(
    private readonly source: { pid?: number; url?: string },
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    if (this.source.pid !== undefined) this.cpuAtStart = readCpuSeconds(this.source.pid);
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sample();
    const end = this.source.pid !== undefined ? readCpuSeconds(this.source.pid) : undefined;
    if (end !== undefined && this.cpuAtStart !== undefined) this.cpuSeconds = end - this.cpuAtStart;
  }

  /** Peak RSS during the run; for /proc sources this is the max of VmRSS samples (VmHWM covers the whole process life). */
  get peak(): number | undefined {
    return this.peakRss > 0 ? this.peakRss : undefined;
  }

  private async sample(): Promise<void> {
    let s: ProcSample | undefined;
    if (this.source.pid !== undefined) s = readProc(this.source.pid);
    else if (this.source.url) {
      const r = await readSystemRoute(this.source.url);
      if (r) s = { t: Date.now(), rss_bytes: r.rss_bytes };
    }
    if (!s) return;
    this.samples.push(s);
    this.peakRss = Math.max(this.peakRss, s.rss_bytes);
  }
}

export function hostFacts(): HostFacts {
  const cpus = os.cpus();
  return {
    cores: os.availableParallelism(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    total_mem_bytes: os.totalmem(),
  };
}

/** Least-squares slope of y over x, and R². */
export function linearRegression(points: { x: number; y: number }[]): { slope: number; intercept: number; r2: number } {
  const n = points.length;
  if (n < 2) return { slope: 0, intercept: points[0]?.y ?? 0, r2: 0 };
  let sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
  for (const { x, y } of points) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
    syy += y * y;
  }
  const den = n * sxx - sx * sx;
  if (den === 0) return { slope: 0, intercept: sy / n, r2: 0 };
  const slope = (n * sxy - sx * sy) / den;
  const intercept = (sy - slope * sx) / n;
  const varY = n * syy - sy * sy;
  const r2 = varY === 0 ? 0 : (n * sxy - sx * sy) ** 2 / (den * varY);
  return { slope, intercept, r2 };
}
