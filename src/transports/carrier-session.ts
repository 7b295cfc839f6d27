/** One connection of a framed carrier (WebSocket, native messaging, WebRTC): parses requests, tracks them, sends frames. */
import { parseRequest, salvageRequestId, type OutboundFrame } from '../protocol/contract.js';
import { TabAgentError, toTabAgentError } from '../protocol/errors.js';
import type { Log } from '../runtime/logger.js';
import type { Gateway } from './gateway.js';

export interface CarrierSessionOptions {
  /** Requests in flight at once on this connection; past it a request gets BUSY. */
  maxInFlight?: number;
}

/**
 * Every framed carrier decodes its bytes (JSON or msgpack) and hands the object here; this class
 * speaks the contract: validation errors as error frames, chunk frames, final replies, cancel,
 * and cancelling whatever is still running when the connection closes.
 */
export class CarrierSession {
  private readonly inflight = new Map<string, AbortController>();
  private closed = false;
  private readonly maxInFlight: number;

  constructor(
    private readonly gateway: Gateway,
    private readonly send: (frame: OutboundFrame) => void,
    private readonly log: Log,
    opts: CarrierSessionOptions = {},
  ) {
    this.maxInFlight = opts.maxInFlight ?? 256;
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  /** Handles one decoded message. Never throws: every failure becomes an error frame. */
  handle(raw: unknown): void {
    if (this.closed) return;
    let req;
    try {
      req = parseRequest(raw);
    } catch (err) {
      this.fail(salvageRequestId(raw), toTabAgentError(err));
      return;
    }
    const id = req.request_id;
    if (this.inflight.has(id)) {
      this.fail(id, new TabAgentError('CONFLICT', `request_id '${id}' is already in flight on this connection; use a fresh id per request`));
      return;
    }
    if (req.route === 'stop_generation' && this.stopLocal(id, req.payload)) return;
    if (this.inflight.size >= this.maxInFlight) {
      this.fail(id, new TabAgentError('BUSY', `at most ${this.maxInFlight} requests may be in flight on one connection`, { retry_after_ms: 100 }));
      return;
    }
    const ac = new AbortController();
    this.inflight.set(id, ac);
    const opts: Parameters<Gateway['call']>[3] = {
      signal: ac.signal,
      onChunk: (data) => {
        if (!this.closed) this.send({ request_id: id, event: 'chunk', data });
      },
    };
    if (req.priority) opts.priority = req.priority;
    this.gateway.call(req.route, req.payload, id, opts).then(
      (data) => {
        this.inflight.delete(id);
        if (!this.closed) this.send({ request_id: id, success: true, data: data ?? null });
      },
      (err: unknown) => {
        this.inflight.delete(id);
        this.fail(id, toTabAgentError(err));
      },
    );
  }

  /** Reports a message the carrier could not even decode (bad JSON, bad UTF-8, too large). */
  reject(error: TabAgentError, requestId: string | null = null): void {
    this.fail(requestId, error);
  }

  /** The connection is gone: cancel everything it started. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ac of this.inflight.values()) ac.abort(new TabAgentError('CANCELLED', 'the connection closed'));
    this.inflight.clear();
  }

  /** Resolves when nothing is in flight (for draining on shutdown), or after the timeout. */
  async drain(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.inflight.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  }

  /** A stop_generation whose target runs on this connection is served here, without a bus hop. */
  private stopLocal(id: string, payload: unknown): boolean {
    const target = typeof payload === 'object' && payload !== null ? (payload as { request_id?: unknown }).request_id : undefined;
    if (typeof target !== 'string') return false;
    const ac = this.inflight.get(target);
    if (!ac) return false;
    ac.abort(new TabAgentError('CANCELLED', 'stopped by stop_generation'));
    this.send({ request_id: id, success: true, data: { request_id: target, stopped: true } });
    return true;
  }

  private fail(requestId: string | null, err: TabAgentError): void {
    if (this.closed) return;
    if (err.code === 'INTERNAL_ERROR') this.log.error('request failed', { request_id: requestId, err });
    this.send({ request_id: requestId, success: false, error: err.toBody() });
  }
}
