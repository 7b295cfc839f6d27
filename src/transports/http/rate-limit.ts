/** http.rate_limit_per_minute: requests per client address per minute (0 = off), for HTTP requests and WebSocket messages alike. */
import { TabAgentError } from '../../protocol/errors.js';

const WINDOW_MS = 60_000;

/**
 * A fixed one-minute window shared by every address: counts are dropped when it rolls over, so memory
 * is bounded by the addresses seen in one minute. The limit is read live (the config key hot-reloads).
 */
export class RateLimiter {
  private windowStart = Date.now();
  private readonly counts = new Map<string, number>();

  constructor(private readonly limit: () => number) {}

  /** Counts one request from the client at `address()` (read only when a limit is set: uWS makes it a string each time); past the limit, the error to answer with. */
  check(address: () => string): TabAgentError | undefined {
    const limit = this.limit();
    if (limit <= 0) return undefined;
    return this.count(address(), limit);
  }

  private count(address: string, limit: number): TabAgentError | undefined {
    const now = Date.now();
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now;
      this.counts.clear();
    }
    const n = (this.counts.get(address) ?? 0) + 1;
    this.counts.set(address, n);
    if (n <= limit) return undefined;
    const retry = this.windowStart + WINDOW_MS - now;
    return new TabAgentError('RATE_LIMIT_EXCEEDED', `more than ${limit} requests in a minute from ${address} (http.rate_limit_per_minute); retry in ${Math.ceil(retry / 1000)} s`, {
      limit_per_minute: limit,
      retry_after_ms: retry,
    });
  }
}
