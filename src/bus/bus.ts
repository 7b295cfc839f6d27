/** The in-process message bus: addresses, request/reply by correlation id, streams, cancellation, deadlines, events. */
import type { CancelSignal } from './cancel.js';
import type { Envelope, Priority, RequestBody } from './envelope.js';
import { nextId } from './envelope.js';
import { Mailbox } from './mailbox.js';
import { LinkedSet } from '../runtime/linked-set.js';
import { TabAgentError, toTabAgentError, type ErrorBody } from '../protocol/errors.js';

/** What a handler gets besides the envelope: a signal that fires on cancel or deadline, and a way to stream. */
export interface RequestContext {
  readonly envelope: Envelope<RequestBody>;
  readonly signal: AbortSignal;
  readonly requestId: string;
  readonly priority: Priority;
  readonly deadline?: number;
  /** Sends one stream chunk to the caller, before the final reply. */
  emit(chunk: unknown): void;
}

/**
 * A handler's answer that hands its request on to another address as it is: the same envelope id, caller,
 * deadline and cancellation, and the owner's reply goes straight back to the caller. No second request,
 * promise or delivery is made for it (the router forwards every request this way).
 */
export class Forward {
  constructor(
    readonly to: string,
    readonly body: RequestBody,
  ) {}
}

/**
 * A target's answer to one request: the reply body itself (a handler that needs no await costs no promise
 * and no microtask), a promise of it, or a Forward. A reply body is plain data, never a Promise or a Forward.
 */
export type Answer = Forward | Promise<unknown> | unknown;

/** Something that can receive requests at an address: an actor, or anything the bus can hand work to. */
export interface BusTarget {
  /** Starts handling one request: answers (see Answer), or throws (or rejects) with the error. */
  receive(ctx: RequestContext): Answer;
}

export interface RequestOptions {
  from: string;
  priority?: Priority;
  /** Relative timeout in ms; becomes an absolute deadline on the envelope. */
  timeoutMs?: number;
  deadline?: number;
  traceId?: string;
  signal?: CancelSignal;
  onChunk?: (chunk: unknown) => void;
}

interface Slot {
  mailbox: Mailbox<Delivery>;
  target: BusTarget | undefined;
  running: number;
  concurrency: number;
}

/** One request in flight; it is also the context its handler gets (one object per request, not one per hop). */
class Delivery implements RequestContext {
  /** Created when the handler first reads its signal, or when the request is aborted. */
  controller: AbortController | undefined;
  onChunk: ((chunk: unknown) => void) | undefined;
  settled = false;
  timer: NodeJS.Timeout | undefined;
  /** Links in the bus's set of requests in flight. */
  prev: Delivery | undefined;
  next: Delivery | undefined;

  constructor(
    /** Re-addressed in place (same id) when a handler forwards the request. */
    readonly env: Envelope<RequestBody>,
    readonly resolve: (value: unknown) => void,
    readonly reject: (err: TabAgentError) => void,
  ) {}

  get envelope(): Envelope<RequestBody> {
    return this.env;
  }
  get signal(): AbortSignal {
    return (this.controller ??= new AbortController()).signal;
  }
  get requestId(): string {
    return this.env.body.requestId;
  }
  get priority(): Priority {
    return this.env.priority;
  }
  get deadline(): number | undefined {
    return this.env.deadline;
  }
  emit(chunk: unknown): void {
    if (!this.settled && this.onChunk) this.onChunk(chunk);
  }
}

export type EventListener = (env: Envelope) => void;

export interface AddressOptions {
  /** Queued requests beyond which the address answers BUSY. */
  mailboxCapacity?: number;
  /** Requests handled at once; the rest wait in the mailbox. */
  concurrency?: number;
}

/**
 * Delivery is by reference inside one thread (an envelope is plain, msgpack-encodable data; the
 * codec in envelope.ts is applied where an envelope crosses a thread or a socket). Encoding on
 * every in-thread hop would cost more than the whole HTTP round trip budget.
 */
export class Bus {
  private readonly slots = new Map<string, Slot>();
  private readonly listeners = new Map<string, Set<EventListener>>();
  /** Requests in flight, queued or running. */
  private readonly inflight = new LinkedSet<Delivery>();

  /** Opens an address; requests queue in its mailbox until a target is attached. */
  open(address: string, opts: AddressOptions = {}): void {
    if (this.slots.has(address)) throw new Error(`bus address already open: ${address}`);
    this.slots.set(address, {
      mailbox: new Mailbox(opts.mailboxCapacity ?? 1024),
      target: undefined,
      running: 0,
      concurrency: opts.concurrency ?? 256,
    });
  }

  /** Attaches (or replaces, after a restart) the target that serves an address. */
  attach(address: string, target: BusTarget | undefined): void {
    const slot = this.slot(address);
    slot.target = target;
    if (target) this.pump(slot);
  }

  close(address: string): void {
    const slot = this.slots.get(address);
    if (!slot) return;
    this.slots.delete(address);
    for (const d of slot.mailbox.drain()) this.fail(d, new TabAgentError('UNAVAILABLE', `${address} is shutting down`));
  }

  has(address: string): boolean {
    return this.slots.has(address);
  }

  /** Queued (not yet started) requests at an address. */
  depth(address: string): number {
    return this.slots.get(address)?.mailbox.size ?? 0;
  }

  /** Sends a request and resolves with the final reply; chunks arrive through onChunk before it. */
  request(to: string, body: RequestBody, opts: RequestOptions): Promise<unknown> {
    const slot = this.slots.get(to);
    if (!slot) return Promise.reject(new TabAgentError('UNAVAILABLE', `no actor at ${to}`));
    const deadline = opts.deadline ?? (opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : undefined);
    const env: Envelope<RequestBody> = {
      id: nextId(),
      kind: 'request',
      from: opts.from,
      to,
      priority: opts.priority ?? 'normal',
      traceId: opts.traceId ?? body.requestId,
      body,
    };
    if (deadline !== undefined) env.deadline = deadline;
    return new Promise((resolve, reject) => {
      const d = new Delivery(env, resolve, reject);
      d.onChunk = opts.onChunk;
      if (!slot.mailbox.offer(d)) {
        reject(busy(to, slot));
        return;
      }
      this.inflight.add(d);
      if (deadline !== undefined) {
        const ms = deadline - Date.now();
        d.timer = setTimeout(() => this.expire(d), Math.max(0, ms));
      }
      if (opts.signal) {
        if (opts.signal.aborted) this.cancel(d, cancelled());
        else opts.signal.addEventListener('abort', () => this.cancel(d, cancelled()), { once: true });
      }
      this.pump(slot);
    });
  }

  /**
   * Cancels every request in flight whose envelope `match` selects; returns how many. A queued one ends at
   * once with CANCELLED; a running one has its signal aborted and ends when its handler returns (a
   * generation then replies with what it produced). A scan: for rare operations (stop_generation), so that
   * no request pays for an index it almost never needs.
   */
  cancelWhere(match: (env: Envelope<RequestBody>) => boolean, reason: unknown = cancelled()): number {
    let n = 0;
    for (const d of this.inflight.toArray()) if (match(d.env) && this.cancel(d, reason)) n++;
    return n;
  }

  private cancel(d: Delivery, reason: unknown): boolean {
    if (d.settled) return false;
    const slot = this.slots.get(d.env.to);
    if (slot && slot.mailbox.remove((q) => q === d)) {
      this.fail(d, new TabAgentError('CANCELLED', 'the request was cancelled before it started'));
      return true;
    }
    this.abort(d, reason);
    return true;
  }

  private abort(d: Delivery, reason: unknown): void {
    (d.controller ??= new AbortController()).abort(reason);
  }

  /** Fire-and-forget events (progress, state changes) to every listener of a topic. */
  publish(topic: string, body: unknown, from: string): void {
    const set = this.listeners.get(topic);
    if (!set || set.size === 0) return;
    const env: Envelope = { id: nextId(), kind: 'event', from, to: topic, priority: 'background', traceId: topic, body };
    for (const l of set) {
      try {
        l(env);
      } catch {
        // A listener's failure is its own; the publisher and other listeners carry on.
      }
    }
  }

  subscribe(topic: string, listener: EventListener): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  private slot(address: string): Slot {
    const slot = this.slots.get(address);
    if (!slot) throw new Error(`bus address not open: ${address}`);
    return slot;
  }

  private pump(slot: Slot): void {
    while (slot.target && slot.running < slot.concurrency) {
      const d = slot.mailbox.take();
      if (!d) return;
      this.start(slot, slot.target, d);
    }
  }

  private start(slot: Slot, target: BusTarget, d: Delivery): void {
    if (d.env.deadline !== undefined && Date.now() >= d.env.deadline) {
      this.expire(d);
      return;
    }
    slot.running++;
    let result: Answer;
    try {
      result = target.receive(d);
    } catch (err) {
      slot.running--;
      this.failed(d, err);
      return;
    }
    if (!(result instanceof Promise)) {
      slot.running--;
      if (result instanceof Forward) this.redirect(d, result);
      else this.succeed(d, result);
      return;
    }
    result.then(
      (value) => {
        slot.running--;
        this.succeed(d, value);
        this.pump(slot);
      },
      (err: unknown) => {
        slot.running--;
        this.failed(d, err);
        this.pump(slot);
      },
    );
  }

  /** A handler's error; when the request was aborted, the abort's reason unless the handler gave a typed error. */
  private failed(d: Delivery, err: unknown): void {
    this.fail(d, toTabAgentError(d.controller?.signal.aborted && !(err instanceof TabAgentError) ? d.controller.signal.reason : err));
  }

  /** Re-addresses a running delivery to the forward's owner, keeping its id, so cancel and deadline still find it. */
  private redirect(d: Delivery, f: Forward): void {
    const slot = this.slots.get(f.to);
    if (!slot) return this.fail(d, new TabAgentError('UNAVAILABLE', `no actor at ${f.to}`));
    if (d.controller?.signal.aborted) return this.fail(d, toTabAgentError(d.controller.signal.reason));
    // The envelope is this delivery's alone (the caller never holds it): re-address it in place.
    d.env.from = d.env.to;
    d.env.to = f.to;
    d.env.body = f.body;
    if (!slot.mailbox.offer(d)) return this.fail(d, busy(f.to, slot));
    this.pump(slot);
  }

  private expire(d: Delivery): void {
    if (d.settled) return;
    const err = new TabAgentError('TIMEOUT', `the request passed its deadline`, { deadline: new Date(d.env.deadline ?? Date.now()).toISOString() });
    this.abort(d, err);
    const slot = this.slots.get(d.env.to);
    slot?.mailbox.remove((q) => q === d);
    this.fail(d, err);
  }

  private succeed(d: Delivery, value: unknown): void {
    if (d.settled) return;
    this.settle(d);
    d.resolve(value);
  }

  private fail(d: Delivery, err: TabAgentError): void {
    if (d.settled) return;
    this.settle(d);
    d.reject(err);
  }

  private settle(d: Delivery): void {
    d.settled = true;
    if (d.timer) clearTimeout(d.timer);
    this.inflight.delete(d);
  }
}

function cancelled(): TabAgentError {
  return new TabAgentError('CANCELLED', 'the request was cancelled');
}

function busy(address: string, slot: Slot): TabAgentError {
  return new TabAgentError('BUSY', `${address} is busy: ${slot.mailbox.capacity} requests already queued`, { retry_after_ms: 100 });
}

export type { ErrorBody };
