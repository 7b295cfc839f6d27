/** The conversation store on LevelDB: sessions, messages, per-model inference settings; every write an atomic, group-committed batch. */
import { randomBytes } from 'node:crypto';
import * as v from 'valibot';
import { validationError } from '../../protocol/contract.js';
import { TabAgentError } from '../../protocol/errors.js';
import { silentLog, type Log } from '../logger.js';
import { openRoot, releaseOwner, type RootDb } from './open.js';
import { TailCache, type TailEntry } from './tail-cache.js';
import {
  DEFAULT_INFERENCE_SETTINGS,
  EXPORT_FORMAT,
  EXPORT_VERSION,
  ExportDocumentSchema,
  type ExportDocument,
  type ImportConflict,
  type InferenceSettings,
  type Message,
  type MessageInput,
  type Session,
} from './schema.js';

/**
 * Key layout (each a sublevel of one LevelDB, so one batch can span them atomically):
 *   meta       'schema' -> layout version
 *   sessions   <session id> -> SessionRecord
 *   recent     <15-digit updated ms>!<session id> -> id       (list_sessions, newest first)
 *   messages   <session id>!<12-digit seq> -> Message as JSON  (a session's history is one range scan)
 *   msgids     <session id>!<message id> -> seq               (cursors and idempotent client ids)
 *   settings   <model id> -> {settings, updated_at}
 *   tombstones <session id> -> deleted_at                     (a deleted session's messages still being cleared)
 * Reserved for later features: api_keys, documents, embeddings.
 * '!' sorts below every id character (see IdSchema), so `<id>!` .. `<id>"` bounds exactly one session.
 */
const SCHEMA_VERSION = 1;
const SEQ_DIGITS = 12;
const MAX_GROUP_JOBS = 512;

export interface StoreOptions {
  /** The LevelDB directory. */
  dir: string;
  /** fsync every commit (default true): an acknowledged write then survives power loss, not only a process crash. */
  sync?: boolean;
  /** Largest message accepted, in bytes of its JSON (default 1 MiB; config key storage.max_message_bytes). */
  maxMessageBytes?: number;
  log?: Log;
  /** Called when the database handle is unusable (closed under us, corrupted); the owner should restart the store. */
  onFatal?: (err: unknown) => void;
}

interface SessionRecord extends Session {
  last_seq: number;
}

export interface HistoryQuery {
  limit?: number;
  /** A message id: return the messages just older than it. */
  before?: string;
  /** A message id: return the messages just newer than it. */
  after?: string;
  /** Without a cursor, page from the newest end (default) or the oldest. */
  from?: 'end' | 'start';
}

export interface HistoryPage {
  session_id: string;
  /** Oldest first, whichever way the page was taken. */
  messages: Message[];
  /** More messages lie further in the paging direction. */
  has_more: boolean;
  /** Pass as `before` (or `after`, when paging forward) for the next page; null at the end. */
  next_cursor: string | null;
}

type Sub = ReturnType<RootDb['sublevel']>;

/**
 * Batch operations address the root with the sublevel's prefix applied and the value already encoded
 * (the same bytes a sublevel writes): abstract-level's per-operation sublevel handling otherwise costs
 * about as much as LevelDB's own write.
 */
type Op = { type: 'put'; key: string; value: string; valueEncoding: 'utf8' } | { type: 'del'; key: string };
const putJson = (sub: Sub, key: string, value: unknown): Op => ({ type: 'put', key: sub.prefix + key, value: JSON.stringify(value), valueEncoding: 'utf8' });
const putText = (sub: Sub, key: string, text: string): Op => ({ type: 'put', key: sub.prefix + key, value: text, valueEncoding: 'utf8' });
const del = (sub: Sub, key: string): Op => ({ type: 'del', key: sub.prefix + key });

/**
 * One write being staged: its ops and session changes, merged into the group only if the job
 * succeeds. Session records (and their recency keys) become ops once per group, at commit.
 */
class Tx {
  readonly ops: Op[] = [];
  readonly sessions = new Map<string, SessionRecord | null>();
  readonly msgids = new Map<string, Message>();
  /** Messages appended, per session, in seq order (for the tail cache once committed). */
  readonly appended = new Map<string, TailEntry[]>();
  readonly after: (() => Promise<void>)[] = [];
  /** The committed record of each session the group touched, as it was before the group. */
  readonly base = new Map<string, SessionRecord | undefined>();

  constructor(
    private readonly store: ConversationStore,
    private readonly parent?: Tx,
  ) {}

  async session(id: string): Promise<SessionRecord | undefined> {
    if (this.sessions.has(id)) return this.sessions.get(id) ?? undefined;
    if (this.parent) return this.parent.session(id);
    if (this.base.has(id)) return this.base.get(id);
    const rec = await this.store.committedSession(id);
    this.base.set(id, rec);
    return rec;
  }

  async messageById(sessionId: string, id: string): Promise<Message | undefined> {
    const k = `${sessionId}!${id}`;
    const staged = this.msgids.get(k) ?? this.parent?.msgids.get(k);
    if (staged) return staged;
    if (this.sessions.get(sessionId) === null || this.parent?.sessions.get(sessionId) === null) return undefined;
    return this.store.committedMessageById(sessionId, id);
  }

  merge(child: Tx): void {
    // One push per op: an import's batch is too long to spread as arguments.
    for (const op of child.ops) this.ops.push(op);
    for (const [k, s] of child.sessions) this.sessions.set(k, s);
    for (const [k, m] of child.msgids) this.msgids.set(k, m);
    for (const [k, list] of child.appended) {
      const mine = this.appended.get(k);
      if (mine) for (const e of list) mine.push(e);
      else this.appended.set(k, list);
    }
    for (const after of child.after) this.after.push(after);
  }
}

interface Job {
  run: (tx: Tx) => Promise<unknown>;
  /** Commits in a group of its own: deletes and imports touch a session's whole key range. */
  solo: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

const seqKey = (seq: number): string => String(seq).padStart(SEQ_DIGITS, '0');
const recentKey = (s: Session): string => `${String(Date.parse(s.updated_at)).padStart(15, '0')}!${s.id}`;
const publicSession = (r: SessionRecord): Session => {
  const { last_seq: _seq, ...s } = r;
  return s;
};

const idPrefix = randomBytes(4).toString('hex');
let idCounter = 0;
/** Unique without coordination: time, a per-process random prefix and a counter. */
export function newId(kind: 'ses' | 'msg'): string {
  idCounter = (idCounter + 1) % 0x1000000;
  return `${kind}_${Date.now().toString(36)}${idPrefix}${idCounter.toString(36).padStart(5, '0')}`;
}

function isFatal(err: unknown, db: RootDb): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  const code = e?.cause?.code ?? e?.code;
  return db.status !== 'open' || code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_CORRUPTION';
}

export class ConversationStore {
  readonly sync: boolean;
  readonly maxMessageBytes: number;
  private readonly log: Log;
  private readonly onFatal: ((err: unknown) => void) | undefined;
  private readonly meta: Sub;
  private readonly sessionsDb: Sub;
  private readonly recent: Sub;
  private readonly messages: Sub;
  private readonly msgids: Sub;
  private readonly settings: Sub;
  private readonly tombstones: Sub;
  /** Committed session records, kept by the committer only, so a record never goes stale under a write. */
  private readonly cache = new Map<string, SessionRecord>();
  private readonly tails = new TailCache();
  private readonly queue: Job[] = [];
  private committing: Promise<void> | undefined;
  private closed = false;
  /** Group commits and the jobs they carried, for the benchmark and `get_stats`. */
  readonly counters = { commits: 0, jobs: 0 };

  private constructor(
    private readonly db: RootDb,
    readonly dir: string,
    opts: StoreOptions,
  ) {
    this.sync = opts.sync ?? true;
    this.maxMessageBytes = opts.maxMessageBytes ?? 1024 * 1024;
    this.log = opts.log ?? silentLog;
    this.onFatal = opts.onFatal;
    const json = { valueEncoding: 'json' } as const;
    this.meta = db.sublevel('meta', json);
    this.sessionsDb = db.sublevel('sessions', json);
    this.recent = db.sublevel('recent', json);
    // Stored as the JSON text already made for the size check, so a write serialises each message once.
    this.messages = db.sublevel('messages', { valueEncoding: 'utf8' });
    this.msgids = db.sublevel('msgids', json);
    this.settings = db.sublevel('settings', json);
    this.tombstones = db.sublevel('tombstones', json);
  }

  /** Opens the store; fails with a clear TabAgentError when the directory is locked, damaged or newer than this build. */
  static async open(opts: StoreOptions): Promise<ConversationStore> {
    const db = await openRoot(opts.dir);
    const store = new ConversationStore(db, opts.dir, opts);
    try {
      await store.checkSchema();
      await store.finishDeletes();
    } catch (err) {
      await db.close().catch(() => {});
      releaseOwner(opts.dir);
      throw err;
    }
    return store;
  }

  /** Waits for queued writes, then closes the handle (releasing the lock). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.committing) await this.committing;
    if (this.db.status === 'open') await this.db.close();
    releaseOwner(this.dir);
  }

  // ---- sessions ----

  createSession(input: { id?: string; title?: string; model?: string; metadata?: Record<string, unknown> } = {}): Promise<Session> {
    return this.write(async (tx) => {
      const id = input.id ?? newId('ses');
      if (await tx.session(id)) throw new TabAgentError('CONFLICT', `a session with id '${id}' already exists`, { session_id: id });
      const now = new Date().toISOString();
      const rec: SessionRecord = { id, title: input.title ?? '', created_at: now, updated_at: now, message_count: 0, last_seq: 0 };
      if (input.model !== undefined) rec.model = input.model;
      if (input.metadata !== undefined) rec.metadata = input.metadata;
      this.checkSize('session metadata', rec);
      tx.sessions.set(id, rec);
      return publicSession(rec);
    });
  }

  async getSession(id: string): Promise<Session> {
    return publicSession(await this.requireSession(id));
  }

  /** Sessions, most recently updated first. */
  async listSessions(q: { limit?: number; cursor?: string } = {}): Promise<{ sessions: Session[]; next_cursor: string | null }> {
    this.assertOpen();
    const limit = q.limit ?? 50;
    const range: { limit: number; reverse: true; lt?: string } = { limit: limit + 1, reverse: true };
    if (q.cursor !== undefined) range.lt = q.cursor;
    const keys = (await this.recent.keys(range).all()) as string[];
    const more = keys.length > limit;
    const page = more ? keys.slice(0, limit) : keys;
    const ids = page.map((k) => k.slice(k.indexOf('!') + 1));
    const records = (await this.sessionsDb.getMany(ids)) as (SessionRecord | undefined)[];
    const sessions = records.filter((r): r is SessionRecord => r !== undefined).map(publicSession);
    return { sessions, next_cursor: more ? (page[page.length - 1] ?? null) : null };
  }

  updateSession(id: string, patch: { title?: string; model?: string; metadata?: Record<string, unknown> }): Promise<Session> {
    return this.write(async (tx) => {
      const old = await this.requireSession(id, tx);
      const rec: SessionRecord = { ...old, updated_at: new Date().toISOString() };
      if (patch.title !== undefined) rec.title = patch.title;
      if (patch.model !== undefined) rec.model = patch.model;
      if (patch.metadata !== undefined) rec.metadata = patch.metadata;
      this.checkSize('session metadata', rec);
      tx.sessions.set(id, rec);
      return publicSession(rec);
    });
  }

  /** Removes the session at once (atomically); its messages are cleared right after, before any later write runs. */
  deleteSession(id: string): Promise<{ session_id: string; deleted: true; messages_deleted: number }> {
    return this.write(async (tx) => {
      const old = await this.requireSession(id, tx);
      tx.sessions.set(id, null);
      tx.ops.push(putJson(this.tombstones, id, new Date().toISOString()));
      tx.after.push(() => this.clearMessages(id));
      return { session_id: id, deleted: true as const, messages_deleted: old.message_count };
    }, true);
  }

  // ---- messages ----

  /**
   * Appends a message. A client-chosen `id` makes retries safe: the same id with the same role and
   * content returns the stored message; with different content it is a CONFLICT.
   */
  saveMessage(sessionId: string, input: MessageInput, opts: { createIfMissing?: boolean } = {}): Promise<Message> {
    return this.write(async (tx) => {
      const old = await tx.session(sessionId);
      if (!old && !opts.createIfMissing) throw notFound(sessionId);
      const now = new Date().toISOString();
      const rec: SessionRecord = old ?? { id: sessionId, title: '', created_at: now, updated_at: now, message_count: 0, last_seq: 0 };
      if (input.id !== undefined) {
        const existing = await tx.messageById(sessionId, input.id);
        if (existing) {
          if (existing.role === input.role && existing.content === input.content) return existing;
          throw new TabAgentError('CONFLICT', `session '${sessionId}' already has a message with id '${input.id}' and different content`, {
            session_id: sessionId,
            message_id: input.id,
          });
        }
      }
      const { msg, json } = this.buildMessage(sessionId, input);
      const seq = rec.last_seq + 1;
      tx.ops.push(putText(this.messages, `${sessionId}!${seqKey(seq)}`, json));
      tx.ops.push(putJson(this.msgids, `${sessionId}!${msg.id}`, seq));
      tx.msgids.set(`${sessionId}!${msg.id}`, msg);
      tx.appended.set(sessionId, [{ seq, msg, bytes: json.length }]);
      tx.sessions.set(sessionId, { ...rec, last_seq: seq, message_count: rec.message_count + 1, updated_at: now });
      return msg;
    });
  }

  /**
   * One page of a session's history: from the in-memory tail when it holds the page (the newest
   * pages of recently used sessions), else by one LevelDB range scan (plus one lookup for a cursor).
   */
  async getHistory(sessionId: string, q: HistoryQuery = {}): Promise<HistoryPage> {
    this.assertOpen();
    const limit = q.limit ?? 50;
    if (q.before !== undefined && q.after !== undefined) {
      throw new TabAgentError('VALIDATION_ERROR', 'pass either before or after, not both', [{ field: 'before', message: 'cannot be combined with after' }]);
    }
    if (!(this.cache.get(sessionId) ?? (await this.warm(sessionId)))) throw notFound(sessionId);
    const hit = this.tails.page(sessionId, { limit, before: q.before, after: q.after, from: q.from });
    if (hit) return page(sessionId, hit.messages, hit.has_more, hit.edge === 'last');

    const lo = `${sessionId}!`;
    const hi = `${sessionId}"`;
    const forward = q.after !== undefined || (q.before === undefined && q.from === 'start');
    const newest = !forward && q.before === undefined;
    // The newest page also refills the tail, so the next read of this session stays in memory.
    const want = newest ? Math.max(limit + 1, this.tails.perSession) : limit + 1;
    const range: { gt?: string; gte?: string; lt?: string; limit: number; reverse: boolean } = { limit: want, reverse: !forward };
    if (q.before !== undefined) {
      range.gte = lo;
      range.lt = `${lo}${seqKey(await this.cursorSeq(sessionId, q.before, 'before'))}`;
    } else if (q.after !== undefined) {
      range.gt = `${lo}${seqKey(await this.cursorSeq(sessionId, q.after, 'after'))}`;
      range.lt = hi;
    } else {
      range.gte = lo;
      range.lt = hi;
    }
    const rows = (await this.messages.iterator(range).all()) as [string, string][];
    if (!forward) rows.reverse();
    const entries: TailEntry[] = rows.map(([key, json]) => ({ seq: Number(key.slice(lo.length)), msg: JSON.parse(json) as Message, bytes: json.length }));
    if (newest) {
      // Installed only if the snapshot ends where the committed history ends (no write landed in between).
      const lastSeq = entries[entries.length - 1]?.seq ?? 0;
      if (this.cache.get(sessionId)?.last_seq === lastSeq) this.tails.install(sessionId, entries.slice(), entries.length < want);
      const has_more = entries.length > limit;
      return page(sessionId, entries.slice(entries.length - Math.min(limit, entries.length)).map((e) => e.msg), has_more, false);
    }
    const has_more = entries.length > limit;
    const kept = has_more ? (forward ? entries.slice(0, limit) : entries.slice(1)) : entries;
    return page(sessionId, kept.map((e) => e.msg), has_more, forward);
  }

  // ---- export / import ----

  async exportSession(id: string): Promise<ExportDocument> {
    const rec = await this.requireSession(id);
    const all = ((await this.messages.values({ gte: `${id}!`, lt: `${id}"` }).all()) as string[]).map((j) => JSON.parse(j) as Message);
    const session: ExportDocument['session'] = { id: rec.id, title: rec.title, created_at: rec.created_at, updated_at: rec.updated_at };
    if (rec.model !== undefined) session.model = rec.model;
    if (rec.metadata !== undefined) session.metadata = rec.metadata;
    const messages = all.map(({ session_id: _sid, ...m }) => m);
    return { format: EXPORT_FORMAT, version: EXPORT_VERSION, exported_at: new Date().toISOString(), session, messages };
  }

  /**
   * Imports an export document in one atomic batch: all of it or nothing. On an id already taken,
   * `onConflict` says what to do: 'error' (default), 'new_id' (import under a fresh id) or 'replace'.
   */
  importSession(raw: unknown, onConflict: ImportConflict = 'error'): Promise<{ session: Session; imported_messages: number; replaced: boolean }> {
    const parsed = v.safeParse(ExportDocumentSchema, raw);
    if (!parsed.success) return Promise.reject(validationError(parsed.issues, 'session export document'));
    const doc = parsed.output;
    const seen = new Map<string, number>();
    for (const [i, m] of doc.messages.entries()) {
      const first = seen.get(m.id);
      if (first !== undefined) {
        return Promise.reject(
          new TabAgentError('VALIDATION_ERROR', `invalid session export document: messages.${i}.id: '${m.id}' repeats messages.${first}.id`, [
            { field: `messages.${i}.id`, message: `repeats messages.${first}.id` },
          ]),
        );
      }
      seen.set(m.id, i);
    }
    return this.write(async (tx) => {
      let id = doc.session.id;
      const existing = await tx.session(id);
      let replaced = false;
      if (existing) {
        if (onConflict === 'error') {
          throw new TabAgentError(
            'CONFLICT',
            `a session with id '${id}' already exists; import with on_conflict 'new_id' to keep both, or 'replace' to overwrite it`,
            { session_id: id },
          );
        }
        if (onConflict === 'new_id') id = newId('ses');
        else {
          replaced = true;
          await this.stageMessageDeletes(tx, id);
        }
      }
      const now = new Date().toISOString();
      const built = doc.messages.map((m) => this.buildMessage(id, m));
      const messages = built.map((b) => b.msg);
      built.forEach(({ msg, json }, i) => {
        tx.ops.push(putText(this.messages, `${id}!${seqKey(i + 1)}`, json));
        tx.ops.push(putJson(this.msgids, `${id}!${msg.id}`, i + 1));
      });
      const rec: SessionRecord = {
        id,
        title: doc.session.title ?? '',
        created_at: doc.session.created_at ?? messages[0]?.created_at ?? now,
        updated_at: doc.session.updated_at ?? messages[messages.length - 1]?.created_at ?? now,
        message_count: messages.length,
        last_seq: messages.length,
      };
      if (doc.session.model !== undefined) rec.model = doc.session.model;
      if (doc.session.metadata !== undefined) rec.metadata = doc.session.metadata;
      this.checkSize('session metadata', rec);
      tx.sessions.set(id, rec);
      return { session: publicSession(rec), imported_messages: messages.length, replaced };
    }, true);
  }

  // ---- inference settings ----

  async getInferenceSettings(model: string): Promise<{ model: string; settings: InferenceSettings; saved: boolean; updated_at: string | null }> {
    this.assertOpen();
    const row = (await this.settings.get(model)) as { settings: InferenceSettings; updated_at: string } | undefined;
    return {
      model,
      settings: { ...DEFAULT_INFERENCE_SETTINGS, ...(row?.settings ?? {}) },
      saved: row !== undefined,
      updated_at: row?.updated_at ?? null,
    };
  }

  /** Replaces a model's saved settings; keys left out fall back to the defaults when read. */
  saveInferenceSettings(model: string, settings: InferenceSettings): Promise<{ model: string; settings: InferenceSettings; saved: true; updated_at: string }> {
    return this.write(async (tx) => {
      this.checkSize('inference settings', settings);
      const updated_at = new Date().toISOString();
      tx.ops.push(putJson(this.settings, model, { settings, updated_at }));
      return { model, settings: { ...DEFAULT_INFERENCE_SETTINGS, ...settings }, saved: true as const, updated_at };
    });
  }

  // ---- internals used by Tx ----

  /** @internal The committed record, cached; only called from inside the committer. */
  async committedSession(id: string): Promise<SessionRecord | undefined> {
    const hit = this.cache.get(id);
    if (hit) return hit;
    const rec = (await this.sessionsDb.get(id)) as SessionRecord | undefined;
    if (rec) this.remember(rec);
    return rec;
  }

  /** @internal */
  async committedMessageById(sessionId: string, id: string): Promise<Message | undefined> {
    const seq = (await this.msgids.get(`${sessionId}!${id}`)) as number | undefined;
    if (seq === undefined) return undefined;
    const json = (await this.messages.get(`${sessionId}!${seqKey(seq)}`)) as string | undefined;
    return json === undefined ? undefined : (JSON.parse(json) as Message);
  }

  // ---- the write path ----

  /**
   * Every write is a job on one queue. The committer stages as many queued jobs as are waiting into
   * one LevelDB batch and commits it once (one fsync when sync is on), then acknowledges them all:
   * concurrent writers share the cost of the sync, and nothing is acknowledged before it is durable.
   * A job that fails validation drops only its own staged ops; a batch that fails fails every job in it.
   */
  private write<T>(run: (tx: Tx) => Promise<T>, solo = false): Promise<T> {
    if (this.closed) return Promise.reject(new TabAgentError('UNAVAILABLE', 'the conversation store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, solo, resolve: resolve as (v: unknown) => void, reject });
      this.committing ??= this.commitLoop();
    });
  }

  /** Runs until the queue is empty; `committing` is cleared in the same tick as the emptiness check, so no job is stranded. */
  private async commitLoop(): Promise<void> {
    try {
      await this.drainQueue();
    } catch (err) {
      this.committing = undefined;
      throw err;
    }
  }

  private async drainQueue(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        this.committing = undefined;
        return;
      }
      const first = this.queue[0];
      let take = 1;
      if (first && !first.solo) {
        while (take < MAX_GROUP_JOBS && take < this.queue.length && !this.queue[take]?.solo) take++;
      }
      const jobs = this.queue.splice(0, take);
      const group = new Tx(this);
      const done: { job: Job; value: unknown }[] = [];
      for (const job of jobs) {
        const tx = new Tx(this, group);
        try {
          const value = await job.run(tx);
          group.merge(tx);
          done.push({ job, value });
        } catch (err) {
          job.reject(err);
        }
      }
      if (done.length === 0) continue;
      for (const op of this.sessionOps(group)) group.ops.push(op);
      try {
        if (group.ops.length > 0) await this.db.batch(group.ops, { sync: this.sync });
      } catch (err) {
        const fatal = isFatal(err, this.db);
        this.cache.clear();
        for (const id of group.sessions.keys()) this.tails.drop(id);
        const failure = new TabAgentError('IO_ERROR', `the conversation store could not write; nothing of this request was saved: ${(err as Error).message}`);
        for (const d of done) d.job.reject(failure);
        this.log.error('storage batch failed', { err, jobs: done.length, fatal });
        if (fatal) {
          this.failQueued(failure);
          this.committing = undefined;
          this.onFatal?.(err);
          return;
        }
        continue;
      }
      this.counters.commits++;
      this.counters.jobs += done.length;
      this.applyCommitted(group, first?.solo === true);
      for (const d of done) d.job.resolve(d.value);
      for (const after of group.after) {
        try {
          await after();
        } catch (err) {
          // The tombstone stays, so the next open finishes the clear.
          this.log.warn('clearing a deleted session did not finish; it resumes at the next start', { err });
        }
      }
    }
  }

  private failQueued(err: TabAgentError): void {
    for (const job of this.queue.splice(0)) job.reject(err);
  }

  private remember(rec: SessionRecord): void {
    if (this.cache.size >= 10_000) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(rec.id, rec);
  }

  /** The session records a group changed (each once, however many of its jobs touched it), with the recency index in step. */
  private sessionOps(group: Tx): Op[] {
    const ops: Op[] = [];
    for (const [id, next] of group.sessions) {
      const old = group.base.get(id);
      if (old) ops.push(del(this.recent, recentKey(old)));
      if (next) {
        ops.push(putJson(this.sessionsDb, id, next));
        ops.push(putJson(this.recent, recentKey(next), id));
      } else {
        ops.push(del(this.sessionsDb, id));
      }
    }
    return ops;
  }

  /** After a durable commit: the committed-record cache and the history tails follow it. */
  private applyCommitted(group: Tx, solo: boolean): void {
    for (const [id, rec] of group.sessions) {
      if (rec) this.remember(rec);
      else this.cache.delete(id);
      if (solo || !rec) this.tails.drop(id);
      else if (!group.base.get(id) && !group.appended.has(id)) this.tails.created(id);
    }
    if (solo) return;
    for (const [id, added] of group.appended) this.tails.append(id, added, group.base.get(id) === undefined);
  }

  private async stageMessageDeletes(tx: Tx, id: string): Promise<void> {
    for (const key of (await this.messages.keys({ gte: `${id}!`, lt: `${id}"` }).all()) as string[]) {
      tx.ops.push(del(this.messages, key));
    }
    for (const key of (await this.msgids.keys({ gte: `${id}!`, lt: `${id}"` }).all()) as string[]) {
      tx.ops.push(del(this.msgids, key));
    }
  }

  private async clearMessages(id: string): Promise<void> {
    await this.messages.clear({ gte: `${id}!`, lt: `${id}"` });
    await this.msgids.clear({ gte: `${id}!`, lt: `${id}"` });
    await this.tombstones.del(id, { sync: this.sync } as never);
  }

  private async finishDeletes(): Promise<void> {
    for (const id of (await this.tombstones.keys().all()) as string[]) {
      this.log.info('finishing the delete of a session interrupted by a stop', { session_id: id });
      await this.clearMessages(id);
    }
  }

  private async checkSchema(): Promise<void> {
    const found = (await this.meta.get('schema')) as number | undefined;
    if (found === undefined) {
      await this.meta.put('schema', SCHEMA_VERSION, { sync: true } as never);
      return;
    }
    if (found > SCHEMA_VERSION) {
      throw new TabAgentError(
        'IO_ERROR',
        `the conversation store ${this.dir} was written by a newer TabAgent (layout ${found}; this build reads up to ${SCHEMA_VERSION}). Upgrade TabAgent, or point --data-dir elsewhere.`,
        { reason: 'newer_schema', dir: this.dir },
      );
    }
  }

  private buildMessage(sessionId: string, input: MessageInput): { msg: Message; json: string } {
    const msg: Message = {
      id: input.id ?? newId('msg'),
      session_id: sessionId,
      role: input.role,
      content: input.content,
      created_at: input.created_at ?? new Date().toISOString(),
    };
    if (input.name !== undefined) msg.name = input.name;
    if (input.partial !== undefined) msg.partial = input.partial;
    if (input.model !== undefined) msg.model = input.model;
    if (input.usage !== undefined) msg.usage = input.usage;
    if (input.metadata !== undefined) msg.metadata = input.metadata;
    return { msg, json: this.checkSize('message', msg) };
  }

  /** Returns the value's JSON, or throws naming the limit. */
  private checkSize(what: string, value: unknown): string {
    const json = JSON.stringify(value);
    // Byte length only matters near the limit; a string's length in UTF-16 units is at most its UTF-8 bytes.
    const bytes = json.length * 3 <= this.maxMessageBytes ? json.length : Buffer.byteLength(json);
    if (bytes > this.maxMessageBytes) {
      throw new TabAgentError(
        'PAYLOAD_TOO_LARGE',
        `the ${what} is ${bytes} bytes; the limit is ${this.maxMessageBytes} bytes (storage.max_message_bytes)`,
        { limit: 'storage.max_message_bytes', limit_bytes: this.maxMessageBytes, size_bytes: bytes },
      );
    }
    return json;
  }

  private async cursorSeq(sessionId: string, messageId: string, field: 'before' | 'after'): Promise<number> {
    const seq = (await this.msgids.get(`${sessionId}!${messageId}`)) as number | undefined;
    if (seq === undefined) {
      throw new TabAgentError('NOT_FOUND', `${field}: session '${sessionId}' has no message '${messageId}'`, { field, session_id: sessionId, message_id: messageId });
    }
    return seq;
  }

  /** Loads a session's committed record into the cache through the committer (the only safe writer of the cache). */
  private warm(id: string): Promise<SessionRecord | undefined> {
    return this.write((tx) => tx.session(id));
  }

  private async requireSession(id: string, tx?: Tx): Promise<SessionRecord> {
    this.assertOpen();
    const rec = tx ? await tx.session(id) : (this.cache.get(id) ?? ((await this.sessionsDb.get(id)) as SessionRecord | undefined));
    if (!rec) throw notFound(id);
    return rec;
  }

  private assertOpen(): void {
    if (this.closed || this.db.status !== 'open') throw new TabAgentError('UNAVAILABLE', 'the conversation store is closed');
  }
}

function page(sessionId: string, messages: Message[], hasMore: boolean, forward: boolean): HistoryPage {
  const edge = forward ? messages[messages.length - 1] : messages[0];
  return { session_id: sessionId, messages, has_more: hasMore, next_cursor: hasMore && edge ? edge.id : null };
}

function notFound(id: string): TabAgentError {
  return new TabAgentError('NOT_FOUND', `no session with id '${id}'`, { session_id: id });
}
