/** The gateway: how a transport posts a contract request onto the bus (to the router) and gets chunks and a reply back. */
import { Addresses } from '../bus/addresses.js';
import type { Bus, RequestOptions } from '../bus/bus.js';
import type { CancelSignal } from '../bus/cancel.js';
import type { Priority } from '../bus/envelope.js';

export interface CallOptions {
  priority?: Priority;
  signal?: CancelSignal;
  onChunk?: (chunk: unknown) => void;
  timeoutMs?: number;
}

export class Gateway {
  constructor(
    private readonly bus: Bus,
    /** The transport's own address, recorded as the sender of its envelopes. */
    readonly from: string,
    private readonly defaultTimeoutMs?: number,
    /** A route's default priority, used when the request names none. */
    private readonly routePriority: (route: string) => Priority | undefined = () => undefined,
  ) {}

  call(route: string, payload: unknown, requestId: string, opts: CallOptions = {}): Promise<unknown> {
    const ro: RequestOptions = { from: this.from, traceId: requestId };
    const priority = opts.priority ?? this.routePriority(route);
    if (priority) ro.priority = priority;
    if (opts.signal) ro.signal = opts.signal;
    if (opts.onChunk) ro.onChunk = opts.onChunk;
    const timeout = opts.timeoutMs ?? this.defaultTimeoutMs;
    if (timeout !== undefined) ro.timeoutMs = timeout;
    return this.bus.request(Addresses.router, { route, payload, requestId }, ro);
  }
}
