/** A set of objects that carry their own links: add and delete allocate nothing (no hash table to grow, shrink and rehash). */

export interface Linked<T> {
  prev: T | undefined;
  next: T | undefined;
}

/**
 * For hot paths that add and remove one entry per request: a Map or Set there costs more than the rest of a
 * bus round trip, because a table that empties and refills with each burst of requests is rebuilt each time.
 * An object belongs to at most one LinkedSet at a time.
 */
export class LinkedSet<T extends Linked<T>> {
  private head: T | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(item: T): void {
    item.prev = undefined;
    item.next = this.head;
    if (this.head) this.head.prev = item;
    this.head = item;
    this.count++;
  }

  /** Removes an item that is in this set. */
  delete(item: T): void {
    if (item.prev) item.prev.next = item.next;
    else if (this.head === item) this.head = item.next;
    else return;
    if (item.next) item.next.prev = item.prev;
    item.prev = item.next = undefined;
    this.count--;
  }

  /** A snapshot, so callers may delete while they go through it. */
  toArray(): T[] {
    const out: T[] = [];
    for (let item = this.head; item; item = item.next) out.push(item);
    return out;
  }
}
