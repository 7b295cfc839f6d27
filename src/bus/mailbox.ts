/** A bounded FIFO mailbox: a full one refuses, so a flood becomes BUSY errors instead of unbounded memory. */

export class Mailbox<T> {
  private items: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`mailbox capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Returns false when full: the caller answers BUSY. */
  offer(item: T): boolean {
    if (this.count === this.capacity) return false;
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
    return true;
  }

  take(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return item;
  }

  /** Removes and returns every queued item (used when an actor stops or a request is cancelled while queued). */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.take(); item !== undefined; item = this.take()) out.push(item);
    return out;
  }

  /** Removes the first queued item matching the predicate. */
  remove(match: (item: T) => boolean): T | undefined {
    const kept: T[] = [];
    let found: T | undefined;
    for (let item = this.take(); item !== undefined; item = this.take()) {
      if (found === undefined && match(item)) found = item;
      else kept.push(item);
    }
    for (const item of kept) this.offer(item);
    return found;
  }
}
