/** The pool's task queue (piscina's TaskQueue): interactive > normal > background, FIFO per class, aging, per-class bounds. */
import { queueOptionsSymbol, type TaskQueue } from 'piscina';
import type { Priority } from '../../bus/envelope.js';

/** A queued piscina task (piscina does not export the type by name). */
export type Task = Parameters<TaskQueue['push']>[0];

/** What the pool attaches to each task (piscina hands it back through queueOptionsSymbol). */
export interface QueuedTaskOptions {
  priority: Priority;
  /** Model the task runs on: the load balancer keeps a model's tasks together so they batch. */
  model?: string;
  /** Set on first enqueue, never reset: aging counts from here even when piscina puts a task back. */
  enqueuedAt?: number;
  /** Set by the load balancer: the worker the task went to. */
  workerId?: number;
}

export type QueueLimits = Record<Priority, number>;

const CLASS_INDEX: Record<Priority, number> = { interactive: 0, normal: 1, background: 2 };

/** A FIFO with O(1) push, shift and unshift (amortised), and O(n) removal, which only cancellation uses. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  unshift(item: T): void {
    if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
  }
  peek(): T | undefined {
    return this.size > 0 ? this.items[this.head] : undefined;
  }
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    // compact once the dead prefix dominates, so memory stays proportional to what is queued
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  remove(item: T): boolean {
    return this.removeWhere((x) => x === item) !== undefined;
  }
  removeWhere(match: (item: T) => boolean): T | undefined {
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i] as T;
      if (!match(item)) continue;
      this.items.splice(i, 1);
      return item;
    }
    return undefined;
  }
}

export function taskOptions(task: Task): QueuedTaskOptions {
  const opts = (task as unknown as Record<symbol, unknown>)[queueOptionsSymbol] as QueuedTaskOptions | null | undefined;
  return opts ?? { priority: 'normal' };
}

/**
 * Tasks wait in one FIFO per class. The next task is the one with the best effective class, where a task is
 * promoted one class for every `agingMs` it has waited (so background work is never starved); ties go to the
 * task that has waited longest. Only the heads of the three FIFOs can win, so shift() is O(1).
 * Bounds are per original class; the pool checks `accepts()` before submitting and answers BUSY past it.
 */
export class PriorityTaskQueue implements TaskQueue {
  private readonly fifos: Fifo<Task>[] = [new Fifo(), new Fifo(), new Fifo()];

  constructor(
    readonly limits: QueueLimits,
    readonly agingMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.fifos[0].size + this.fifos[1].size + this.fifos[2].size;
  }

  sizeOf(priority: Priority): number {
    return this.fifos[CLASS_INDEX[priority]].size;
  }

  depths(): Record<Priority, number> {
    return { interactive: this.fifos[0].size, normal: this.fifos[1].size, background: this.fifos[2].size };
  }

  /** Whether one more task of this class fits under its bound. */
  accepts(priority: Priority): boolean {
    return this.sizeOf(priority) < this.limits[priority];
  }

  push(task: Task): void {
    this.fifo(task).push(task);
  }

  /** piscina puts a task it could not place back at the front (stricterFIFO), keeping FIFO order. */
  unshift(task: Task): void {
    this.fifo(task).unshift(task);
  }

  remove(task: Task): void {
    for (const f of this.fifos) if (f.remove(task)) return;
  }

  /** Takes out the queued task that matches (a request cancelled before it started). */
  withdraw(match: (task: Task) => boolean): Task | null {
    for (const f of this.fifos) {
      const t = f.removeWhere(match);
      if (t) return t;
    }
    return null;
  }

  shift(): Task | null {
    const now = this.now();
    let best = -1;
    let bestRank = Infinity;
    let bestAt = Infinity;
    for (let c = 0; c < 3; c++) {
      const head = this.fifos[c].peek();
      if (!head) continue;
      const at = taskOptions(head).enqueuedAt ?? now;
      const rank = Math.max(0, c - Math.floor((now - at) / this.agingMs));
      if (rank < bestRank || (rank === bestRank && at < bestAt)) {
        best = c;
        bestRank = rank;
        bestAt = at;
      }
    }
    return best < 0 ? null : (this.fifos[best].shift() ?? null);
  }

  private fifo(task: Task): Fifo<Task> {
    const opts = taskOptions(task);
    opts.enqueuedAt ??= this.now();
    return this.fifos[CLASS_INDEX[opts.priority] ?? 1];
  }
}

