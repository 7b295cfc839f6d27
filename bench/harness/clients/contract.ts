/** The request contract from the client side, for any framed carrier (WebSocket, native messaging, WebRTC): ids, chunks, final frames. */
import { performance } from 'node:perf_hooks';
import type { Outcome } from '../types.js';

interface Waiting {
  start: number;
  chunks: number;
  firstChunkAt?: number;
  resolve(o: Outcome): void;
}

export interface ContractFrame {
  request_id?: string | null;
  success?: boolean;
  event?: string;
  data?: unknown;
  error?: { code?: string; message?: string };
}

/**
 * Sends `{request_id, route, payload}` frames through `write` and settles each call when its final
 * frame arrives through `receive`. Many calls may be in flight; chunk frames count as tokens.
 */
export class ContractClient {
  private readonly waiting = new Map<string, Waiting>();
  private seq = 0;
  private closedWith: string | undefined;

  constructor(
    private readonly write: (frame: object) => void,
    private readonly prefix = `b${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
  ) {}

  get inFlight(): number {
    return this.waiting.size;
  }

  call(route: string, payload: unknown, priority?: string): Promise<Outcome> {
    if (this.closedWith) return Promise.resolve({ ok: false, code: 'CONNECTION_CLOSED', message: this.closedWith });
    const request_id = `${this.prefix}-${(this.seq++).toString(36)}`;
    return new Promise((resolve) => {
      this.waiting.set(request_id, { start: performance.now(), chunks: 0, resolve });
      const frame: Record<string, unknown> = { request_id, route, payload };
      if (priority) frame['priority'] = priority;
      try {
        this.write(frame);
      } catch (err) {
        this.waiting.delete(request_id);
        resolve({ ok: false, code: 'SEND_FAILED', message: err instanceof Error ? err.message : String(err) });
      }
    });
  }

  /** Feeds one decoded frame from the carrier. */
  receive(frame: ContractFrame): void {
    const id = frame.request_id;
    if (typeof id !== 'string') return;
    const w = this.waiting.get(id);
    if (!w) return;
    if (frame.event === 'chunk') {
      w.chunks++;
      w.firstChunkAt ??= performance.now();
      return;
    }
    if (frame.success === undefined) return;
    this.waiting.delete(id);
    const o: Outcome = frame.success ? { ok: true } : { ok: false, code: frame.error?.code ?? 'ERROR', message: frame.error?.message ?? '' };
    if (w.chunks > 0) {
      o.tokens = completionTokens(frame.data) ?? w.chunks;
      o.ttftMs = w.firstChunkAt! - w.start;
    }
    w.resolve(o);
  }

  /** The carrier is gone: everything still waiting fails with this reason. */
  fail(reason: string): void {
    this.closedWith = reason;
    for (const w of this.waiting.values()) w.resolve({ ok: false, code: 'CONNECTION_CLOSED', message: reason });
    this.waiting.clear();
  }
}

/** usage.completion_tokens of a chat/generate reply, when present (the real token count; chunks may merge tokens). */
export function completionTokens(data: unknown): number | undefined {
  const n = (data as { usage?: { completion_tokens?: unknown } } | null | undefined)?.usage?.completion_tokens;
  return typeof n === 'number' ? n : undefined;
}
