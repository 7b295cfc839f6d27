/** Opening the LevelDB directory with errors a person can act on (locked by whom, damaged and how to repair), and the repair itself. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { TabAgentError } from '../../protocol/errors.js';

/** Where a data directory keeps its conversation store. */
export function storeDir(dataDir: string): string {
  return path.join(dataDir, 'conversations');
}

/** Written next to LevelDB's files while a process holds the store, so a second one can say who holds it. */
export const OWNER_FILE = 'tabagent-owner.json';

interface Owner {
  pid: number;
  started_at: string;
  host: string;
  command: string;
}

export type RootDb = Level<string, unknown>;

function causeOf(err: unknown): { code?: string; message: string } {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const inner = e?.cause ?? e;
  const out: { code?: string; message: string } = { message: String(inner?.message ?? e?.message ?? err) };
  const code = inner?.code ?? e?.code;
  if (code !== undefined) out.code = code;
  return out;
}

function readOwner(dir: string): Owner | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockedError(dir: string): TabAgentError {
  const owner = readOwner(dir);
  const lockFile = path.join(dir, 'LOCK');
  if (owner && owner.host === os.hostname() && owner.pid !== process.pid && alive(owner.pid)) {
    return new TabAgentError(
      'IO_ERROR',
      `the conversation store ${dir} is locked: another TabAgent process (pid ${owner.pid}, started ${owner.started_at}: ${owner.command}) holds it. ` +
        `Stop that process (kill ${owner.pid}) or start this one with a different --data-dir.`,
      { reason: 'locked', dir, holder: owner },
    );
  }
  return new TabAgentError(
    'IO_ERROR',
    `the conversation store ${dir} is locked: another process holds ${lockFile}. ` +
      `Find it with \`lsof ${lockFile}\` (or \`fuser ${lockFile}\`), stop it, or start this server with a different --data-dir.`,
    { reason: 'locked', dir },
  );
}

function damagedError(dir: string, detail: string): TabAgentError {
  return new TabAgentError(
    'IO_ERROR',
    `the conversation store ${dir} is damaged (${detail}). Stop every TabAgent process, back up the directory, then run ` +
      `\`tabagent db repair --data-dir <data dir>\` (LevelDB's repair keeps what is readable and moves the rest into ${path.join(dir, 'lost')}).`,
    { reason: 'corrupt', dir, detail },
  );
}

/**
 * LevelDB with create_if_missing silently starts an empty database when CURRENT is gone but its
 * tables are not; refusing here keeps the old conversations recoverable by repair.
 */
function checkNotOrphaned(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const hasData = names.some((n) => /\.(ldb|sst|log)$/.test(n) || n.startsWith('MANIFEST-'));
  if (hasData && !names.includes('CURRENT')) throw damagedError(dir, 'its CURRENT file is missing');
}

/** Opens (creating if needed) the root database, translating LevelDB's failures into clear, actionable errors. */
export async function openRoot(dir: string): Promise<RootDb> {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new TabAgentError('IO_ERROR', `cannot create the conversation store directory ${dir}: ${(err as Error).message}`, { reason: 'io', dir });
  }
  checkNotOrphaned(dir);
  const db: RootDb = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  try {
    await db.open();
  } catch (err) {
    throw classifyOpenError(dir, err);
  }
  const owner: Owner = { pid: process.pid, started_at: new Date().toISOString(), host: os.hostname(), command: process.argv.slice(1).join(' ') };
  try {
    fs.writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(owner));
  } catch {
    // Only the lock message's detail depends on it.
  }
  return db;
}

export function classifyOpenError(dir: string, err: unknown): TabAgentError {
  const cause = causeOf(err);
  if (cause.code === 'LEVEL_LOCKED') return lockedError(dir);
  if (cause.code === 'LEVEL_CORRUPTION') return damagedError(dir, cause.message);
  // A CURRENT that names a missing MANIFEST is damage too, though LevelDB reports it as an I/O error.
  if (cause.code === 'LEVEL_IO_ERROR' && /MANIFEST|CURRENT|No such file/i.test(cause.message)) return damagedError(dir, cause.message);
  return new TabAgentError('IO_ERROR', `cannot open the conversation store ${dir}: ${cause.message}`, { reason: 'io', dir, code: cause.code });
}

/** Removes the owner file if it is this process's, on a clean close. */
export function releaseOwner(dir: string): void {
  const owner = readOwner(dir);
  if (owner && owner.pid === process.pid && owner.host === os.hostname()) {
    try {
      fs.rmSync(path.join(dir, OWNER_FILE), { force: true });
    } catch {
      // A stale owner file is harmless: the lock message checks whether that pid is alive.
    }
  }
}

export interface RepairReport {
  dir: string;
  sessions: number;
  messages: number;
  /** Files LevelDB could not read, moved aside by the repair. */
  lost: string[];
}

/**
 * `tabagent db repair`: rebuilds LevelDB's metadata from the table and log files that are readable,
 * then opens the store to count what survived. Refuses while another process holds the store.
 */
export async function repairStore(dir: string): Promise<RepairReport> {
  if (!fs.existsSync(dir)) throw new TabAgentError('NOT_FOUND', `there is no conversation store at ${dir}`);
  const probe = new Level(dir, { createIfMissing: false });
  try {
    await probe.open();
    await probe.close();
  } catch (err) {
    if (causeOf(err).code === 'LEVEL_LOCKED') throw lockedError(dir);
  }
  // In Node `Level` is classic-level's ClassicLevel, which has the static repair.
  await (Level as unknown as { repair(location: string): Promise<void> }).repair(dir);
  const db = await openRoot(dir);
  try {
    const sessions = (await db.sublevel('sessions').keys().all()).length;
    const messages = (await db.sublevel('messages').keys().all()).length;
    const lostDir = path.join(dir, 'lost');
    const lost = fs.existsSync(lostDir) ? fs.readdirSync(lostDir) : [];
    return { dir, sessions, messages, lost };
  } finally {
    await db.close();
    releaseOwner(dir);
  }
}
