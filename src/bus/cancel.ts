/** Cancel signals: what the bus needs of one (an AbortSignal is one), and a lazy one that costs nothing until used. */

/** The part of an AbortSignal the bus and the gateway use. */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
}

/**
 * A cancel source for carriers that start many short requests (an HTTP request per exchange): an AbortController
 * and its signal cost more than a health check's whole route through the bus, and most requests are never cancelled.
 */
export class LazyCancel implements CancelSignal {
  aborted = false;
  reason: unknown;
  private listeners: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) (this.listeners ??= []).push(listener);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const l of listeners ?? []) l();
  }
}
