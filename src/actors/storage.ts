/** The storage actor: sole owner of the conversation store's LevelDB handle; every transport reaches it through the bus. */
import { Addresses } from '../bus/addresses.js';
import type { Bus } from '../bus/bus.js';
import type { PayloadOf } from '../protocol/route.js';
import type * as R from '../protocol/routes/sessions.js';
import type { Log } from '../runtime/logger.js';
import { ConversationStore } from '../runtime/storage/store.js';
import { TabAgentError } from '../protocol/errors.js';
import { Actor } from './actor.js';

export interface StorageActorOptions {
  /** The LevelDB directory (the server passes <data dir>/conversations). */
  dir: string;
  /** Config storage.sync. */
  sync: boolean;
  /** Config storage.max_message_bytes. */
  maxMessageBytes: number;
}

/** The original TabAgent named a model by repo and quantisation variant; those settings live under `repo_id:variant`. */
function modelKey(p: { model?: string | undefined; repo_id?: string | undefined; variant?: string | undefined }): string {
  return p.model ?? `${p.repo_id}:${p.variant ?? ''}`;
}

export class StorageActor extends Actor {
  private current: ConversationStore | undefined;

  constructor(
    bus: Bus,
    log: Log,
    private readonly opts: StorageActorOptions,
  ) {
    super(Addresses.storage, bus, log);
    this.on('create_session', (p: PayloadOf<typeof R.createSession>) => this.store.createSession(p));
    this.on('list_sessions', (p: PayloadOf<typeof R.listSessions>) => this.store.listSessions(p));
    this.on('get_session', (p: PayloadOf<typeof R.getSession>) => this.store.getSession(p.session_id));
    this.on('rename_session', ({ session_id, ...patch }: PayloadOf<typeof R.renameSession>) => this.store.updateSession(session_id, patch));
    this.on('delete_session', (p: PayloadOf<typeof R.deleteSession>) => this.store.deleteSession(p.session_id));
    this.on('save_message', (p: PayloadOf<typeof R.saveMessage>) =>
      this.store.saveMessage(p.session_id, p.message, { createIfMissing: p.create_if_missing === true }),
    );
    this.on('get_history', ({ session_id, ...q }: PayloadOf<typeof R.getHistory>) => this.store.getHistory(session_id, q));
    this.on('export_session', (p: PayloadOf<typeof R.exportSession>) => this.store.exportSession(p.session_id));
    this.on('import_session', (p: PayloadOf<typeof R.importSession>) => this.store.importSession(p.data, p.on_conflict));
    this.on('get_inference_settings', (p: PayloadOf<typeof R.getInferenceSettings>) => this.store.getInferenceSettings(modelKey(p)));
    this.on('save_inference_settings', (p: PayloadOf<typeof R.saveInferenceSettings>) => this.store.saveInferenceSettings(modelKey(p), p.settings));
  }

  /** The open store, for in-process callers (the CLI's export, stats). */
  get store(): ConversationStore {
    if (!this.current) throw new TabAgentError('UNAVAILABLE', 'the conversation store is not open');
    return this.current;
  }

  /** Opens the database; a locked or damaged store stops the server from starting, with the message saying what to do. */
  override async start(): Promise<void> {
    this.current = await ConversationStore.open({
      dir: this.opts.dir,
      sync: this.opts.sync,
      maxMessageBytes: this.opts.maxMessageBytes,
      log: this.log,
      onFatal: (err) => this.fail(err),
    });
    this.log.info('conversation store open', { dir: this.opts.dir, sync: this.opts.sync, max_message_bytes: this.opts.maxMessageBytes });
  }

  override async stop(): Promise<void> {
    const store = this.current;
    this.current = undefined;
    await store?.close();
  }

  /** The handle is gone: release it (so the restarted instance can take the lock), then let the supervisor restart us. */
  private fail(err: unknown): void {
    const store = this.current;
    this.current = undefined;
    this.log.error('conversation store failed; restarting the storage actor', { err });
    void (store ? store.close().catch(() => {}) : Promise.resolve()).then(() => this.crash(err));
  }
}
