/** The newest messages of recently used sessions, in memory: most history reads are "the latest page", served without LevelDB. */
import type { Message } from './schema.js';

export interface TailEntry {
  seq: number;
  msg: Message;
  bytes: number;
}

interface Tail {
  /** The committed suffix of a session's history, oldest first, contiguous in seq. */
  entries: TailEntry[];
  /** The tail reaches back to the session's first message (the whole history is here). */
  fromFirst: boolean;
  bytes: number;
}

export interface TailQuery {
  limit: number;
  before?: string | undefined;
  after?: string | undefined;
  from?: 'end' | 'start' | undefined;
}

/**
 * Kept only by the store's committer (after a batch is durable) and by reads that prove their
 * snapshot matches the committed last sequence number, so a tail is never stale or gappy.
 * Bounded in entries per session, in bytes overall, and large messages are never cached.
 */
export class TailCache {
  private readonly tails = new Map<string, Tail>();
  private bytes = 0;

  constructor(
    readonly perSession = 128,
    readonly maxBytes = 32 * 1024 * 1024,
    readonly maxEntryBytes = 16 * 1024,
  ) {}

  lastSeq(id: string): number | undefined {
    const t = this.tails.get(id);
    return t ? (t.entries[t.entries.length - 1]?.seq ?? 0) : undefined;
  }

  drop(id: string): void {
    const t = this.tails.get(id);
    if (!t) return;
    this.bytes -= t.bytes;
    this.tails.delete(id);
  }

  /** Committed appends, in seq order. `fresh`: the session was created in this same commit. */
  append(id: string, added: TailEntry[], fresh: boolean): void {
    if (added.some((e) => e.bytes > this.maxEntryBytes)) return this.drop(id);
    let t = this.tails.get(id);
    if (!t) {
      if (!fresh || added[0]?.seq !== 1) return;
      t = { entries: [], fromFirst: true, bytes: 0 };
      this.tails.set(id, t);
    } else if ((t.entries[t.entries.length - 1]?.seq ?? 0) !== (added[0]?.seq ?? 0) - 1) {
      return this.drop(id);
    }
    for (const e of added) {
      // A copy, frozen: the caller keeps the object it was given, and readers share this one.
      t.entries.push({ ...e, msg: Object.freeze({ ...e.msg }) });
      t.bytes += e.bytes;
      this.bytes += e.bytes;
    }
    this.trim(t);
    this.touch(id, t);
    this.evict();
  }

  /** A new, empty session: its (empty) tail is its whole history. */
  created(id: string): void {
    this.drop(id);
    this.tails.set(id, { entries: [], fromFirst: true, bytes: 0 });
    this.evict();
  }

  /** Installs a tail read from LevelDB; the caller has checked it ends at the committed last seq. */
  install(id: string, entries: TailEntry[], fromFirst: boolean): void {
    if (entries.some((e) => e.bytes > this.maxEntryBytes)) return;
    for (const e of entries) Object.freeze(e.msg);
    this.drop(id);
    const t: Tail = { entries, fromFirst, bytes: entries.reduce((n, e) => n + e.bytes, 0) };
    this.bytes += t.bytes;
    this.trim(t);
    this.tails.set(id, t);
    this.evict();
  }

  /** A page served from memory, or undefined when the tail cannot answer it exactly. */
  page(id: string, q: TailQuery): { messages: Message[]; has_more: boolean; edge: 'first' | 'last' } | undefined {
    const t = this.tails.get(id);
    if (!t) return undefined;
    const e = t.entries;
    const { limit } = q;
    let from: number;
    let to: number;
    let hasMore: boolean;
    let forward = false;
    if (q.after !== undefined) {
      const i = this.indexOf(e, q.after);
      if (i < 0) return undefined;
      from = i + 1;
      to = Math.min(e.length, from + limit);
      hasMore = e.length > to;
      forward = true;
    } else if (q.before !== undefined || q.from !== 'start') {
      const end = q.before !== undefined ? this.indexOf(e, q.before) : e.length;
      if (end < 0) return undefined;
      if (end <= limit && !t.fromFirst) return undefined;
      from = Math.max(0, end - limit);
      to = end;
      hasMore = from > 0 || !t.fromFirst;
    } else {
      if (!t.fromFirst) return undefined;
      from = 0;
      to = Math.min(e.length, limit);
      hasMore = e.length > to;
      forward = true;
    }
    this.touch(id, t);
    const messages = new Array<Message>(to - from);
    for (let i = from; i < to; i++) messages[i - from] = e[i]!.msg;
    return { messages, has_more: hasMore, edge: forward ? 'last' : 'first' };
  }

  private indexOf(entries: TailEntry[], id: string): number {
    for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.msg.id === id) return i;
    return -1;
  }

  private trim(t: Tail): void {
    const excess = t.entries.length - this.perSession;
    if (excess <= 0) return;
    for (const e of t.entries.splice(0, excess)) {
      t.bytes -= e.bytes;
      this.bytes -= e.bytes;
    }
    t.fromFirst = false;
  }

  private touch(id: string, t: Tail): void {
    this.tails.delete(id);
    this.tails.set(id, t);
  }

  private evict(): void {
    while (this.bytes > this.maxBytes || this.tails.size > 4096) {
      const oldest = this.tails.keys().next().value;
      if (oldest === undefined) return;
      this.drop(oldest);
    }
  }
}
