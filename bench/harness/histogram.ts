/** Latency histograms (hdr-histogram-js, microsecond resolution) and their percentile summary. */
import * as hdr from 'hdr-histogram-js';
import type { LatencySummary } from './types.js';

/** Up to one hour, 3 significant digits: 0.1% relative error at every percentile. */
const HIGHEST_US = 3_600_000_000;

export class LatencyHistogram {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3, useWebAssembly: false });

  /** Records one latency in milliseconds (sub-microsecond values count as 1 µs). */
  record(ms: number): void {
    this.h.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Value at a percentile (0-100) in ms. */
  percentile(p: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(p) / 1000;
  }

  add(other: LatencyHistogram): void {
    this.h.add(other.h);
  }

  reset(): void {
    this.h.reset();
  }

  summary(): LatencySummary {
    return summarise(this);
  }
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export function summarise(h: LatencyHistogram): LatencySummary {
  const raw = (h as unknown as { h: hdr.Histogram }).h;
  if (raw.totalCount === 0) return { count: 0, mean_ms: 0, p50_ms: 0, p90_ms: 0, p99_ms: 0, p99_9_ms: 0, max_ms: 0 };
  const max = raw.maxValue / 1000;
  // A percentile is reported as the top of its bucket, which may lie above the largest value recorded.
  const at = (p: number): number => round(Math.min(max, h.percentile(p)));
  return {
    count: raw.totalCount,
    mean_ms: round(raw.mean / 1000),
    p50_ms: at(50),
    p90_ms: at(90),
    p99_ms: at(99),
    p99_9_ms: at(99.9),
    max_ms: round(max),
  };
}
