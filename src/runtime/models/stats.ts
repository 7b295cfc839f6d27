/** Per-model generation statistics for get_stats: requests by outcome, tokens, throughput over the last minute, time to first token. */
import type { GenerateResult } from '../inference/types.js';

const WINDOW_MS = 60_000;
const TTFT_SAMPLES = 512;

export interface ModelStatsSnapshot {
  requests: number;
  completed: number;
  cancelled: number;
  failed: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Generated tokens per second, all streams together, over the last minute. */
  tokens_per_s: number;
  /** Mean decode rate of one stream (tokens after the first, per second of its generation). */
  stream_tokens_per_s: number | null;
  ttft_ms: { p50: number | null; p99: number | null; samples: number };
}

export class ModelStats {
  private requests = 0;
  private completed = 0;
  private cancelled = 0;
  private failed = 0;
  private promptTokens = 0;
  private completionTokens = 0;
  private streamRate = 0;
  private streamRateSamples = 0;
  /** [end time, tokens] of generations in the last minute. */
  private recent: Array<[number, number]> = [];
  private readonly ttft: number[] = [];
  private ttftNext = 0;

  constructor(private readonly now: () => number = Date.now) {}

  started(): void {
    this.requests++;
  }

  finished(result: GenerateResult, elapsedMs: number): void {
    if (result.finish_reason === 'cancelled') this.cancelled++;
    else this.completed++;
    this.promptTokens += result.usage.prompt_tokens;
    this.completionTokens += result.usage.completion_tokens;
    this.recent.push([this.now(), result.usage.completion_tokens]);
    if (result.usage.completion_tokens > 0) {
      if (this.ttft.length < TTFT_SAMPLES) this.ttft.push(result.ttft_ms);
      else this.ttft[this.ttftNext++ % TTFT_SAMPLES] = result.ttft_ms;
    }
    const decodeMs = elapsedMs - result.ttft_ms;
    if (result.usage.completion_tokens > 1 && decodeMs > 0) {
      this.streamRate += ((result.usage.completion_tokens - 1) * 1000) / decodeMs;
      this.streamRateSamples++;
    }
  }

  failedOne(): void {
    this.failed++;
  }

  snapshot(): ModelStatsSnapshot {
    const now = this.now();
    this.recent = this.recent.filter(([t]) => now - t <= WINDOW_MS);
    const tokens = this.recent.reduce((n, [, k]) => n + k, 0);
    const sorted = [...this.ttft].sort((a, b) => a - b);
    const pct = (q: number): number | null => (sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!) : null);
    return {
      requests: this.requests,
      completed: this.completed,
      cancelled: this.cancelled,
      failed: this.failed,
      prompt_tokens: this.promptTokens,
      completion_tokens: this.completionTokens,
      tokens_per_s: round(tokens / (WINDOW_MS / 1000)),
      stream_tokens_per_s: this.streamRateSamples ? round(this.streamRate / this.streamRateSamples) : null,
      ttft_ms: { p50: pct(0.5), p99: pct(0.99), samples: sorted.length },
    };
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
