import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { fitHistoryToContext } from '../../src/runtime/storage/context-fit.js';
import { ConversationStore, type HistoryPage } from '../../src/runtime/storage/store.js';
import type { Message } from '../../src/runtime/storage/schema.js';

/** What these helpers need of a tap test. */
type Teardown = { teardown(fn: () => unknown): void };

function tmpDir(t: Teardown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tabagent-store-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'conversations');
}

async function openStore(t: Teardown, dir = tmpDir(t), opts: { sync?: boolean; maxMessageBytes?: number } = {}): Promise<ConversationStore> {
  const store = await ConversationStore.open({ dir, ...opts });
  t.teardown(() => store.close());
  return store;
}

/** Runs the real CLI from source. */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Pages the whole history with the given cursor direction, returning every message id in the order seen. */
async function pageAll(store: ConversationStore, sessionId: string, limit: number, direction: 'backward' | 'forward'): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: HistoryPage = direction === 'backward'
      ? await store.getHistory(sessionId, cursor ? { limit, before: cursor } : { limit })
      : await store.getHistory(sessionId, cursor ? { limit, after: cursor } : { limit, from: 'start' });
    const pageIds = page.messages.map((m) => m.id);
    if (direction === 'backward') ids.unshift(...pageIds);
    else ids.push(...pageIds);
    cursor = page.next_cursor;
    if (++pages > 1e6) throw new Error('paging does not end');
  } while (cursor);
  return ids;
}

t.test('sessions: create, get, list newest first, rename, delete', async (t) => {
  const store = await openStore(t);
  const a = await store.createSession({ title: 'first' });
  t.match(a, { id: /^ses_/, title: 'first', message_count: 0 });
  const b = await store.createSession({ id: 'my-chat', title: 'second', model: 'tiny' });
  t.equal(b.id, 'my-chat', 'a client-chosen id is kept');
  await t.rejects(store.createSession({ id: 'my-chat' }), { code: 'CONFLICT', message: /my-chat/ });

  await store.saveMessage(a.id, { role: 'user', content: 'hello' });
  const listed = await store.listSessions();
  t.same(listed.sessions.map((s) => s.id), [a.id, b.id], 'the session written last comes first');
  t.equal(listed.next_cursor, null);
  const firstPage = await store.listSessions({ limit: 1 });
  t.equal(firstPage.sessions.length, 1);
  const second = await store.listSessions({ limit: 1, cursor: firstPage.next_cursor! });
  t.same(second.sessions.map((s) => s.id), [b.id], 'the cursor continues where the first page ended');

  const renamed = await store.updateSession(b.id, { title: 'renamed' });
  t.equal(renamed.title, 'renamed');
  t.equal((await store.getSession(b.id)).title, 'renamed');
  t.equal((await store.listSessions()).sessions[0]?.id, b.id, 'a rename counts as an update');

  t.same(await store.deleteSession(a.id), { session_id: a.id, deleted: true, messages_deleted: 1 });
  await t.rejects(store.getSession(a.id), { code: 'NOT_FOUND', message: new RegExp(a.id) });
  await t.rejects(store.getHistory(a.id), { code: 'NOT_FOUND' });
  await t.rejects(store.saveMessage(a.id, { role: 'user', content: 'x' }), { code: 'NOT_FOUND' });
  await t.rejects(store.deleteSession(a.id), { code: 'NOT_FOUND' });
  await t.rejects(store.updateSession('nope', { title: 'x' }), { code: 'NOT_FOUND' });
  t.same((await store.listSessions()).sessions.map((s) => s.id), [b.id]);

  const again = await store.createSession({ id: a.id });
  t.equal(again.message_count, 0);
  t.same((await store.getHistory(a.id)).messages, [], 'a re-created id does not see the deleted history');
});

t.test('messages: ids, partial replies, idempotent retries, size limit naming the setting', async (t) => {
  const store = await openStore(t, undefined, { maxMessageBytes: 2000 });
  const s = await store.createSession();
  const m = await store.saveMessage(s.id, { role: 'assistant', content: 'half a rep', partial: true, model: 'tiny', usage: { completion_tokens: 3 } });
  t.match(m, { id: /^msg_/, session_id: s.id, role: 'assistant', partial: true, model: 'tiny' });
  t.ok(!Number.isNaN(Date.parse(m.created_at)));

  const first = await store.saveMessage(s.id, { id: 'client-1', role: 'user', content: 'hi' });
  const retry = await store.saveMessage(s.id, { id: 'client-1', role: 'user', content: 'hi' });
  t.same(retry, first, 'a retried save with the same id returns the stored message');
  await t.rejects(store.saveMessage(s.id, { id: 'client-1', role: 'user', content: 'other' }), { code: 'CONFLICT' });
  t.equal((await store.getSession(s.id)).message_count, 2, 'the retry did not add a message');

  const err = await store.saveMessage(s.id, { role: 'user', content: 'x'.repeat(5000) }).catch((e: unknown) => e);
  t.match(err, { code: 'PAYLOAD_TOO_LARGE', message: /limit is 2000 bytes \(storage\.max_message_bytes\)/, details: { limit_bytes: 2000 } });
  t.equal((await store.getSession(s.id)).message_count, 2, 'the oversized message was not saved');

  const created = await store.saveMessage('new-one', { role: 'user', content: 'x' }, { createIfMissing: true });
  t.equal(created.session_id, 'new-one');
  t.equal((await store.getSession('new-one')).message_count, 1, 'create_if_missing creates the session');
});

t.test('pagination returns every message exactly once, in order, both ways', async (t) => {
  const store = await openStore(t);
  const s = await store.createSession();
  const other = await store.createSession({ id: `${s.id}x` });
  const ids: string[] = [];
  // Concurrent writers, interleaved with another session whose id extends this one's.
  await Promise.all(Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; i < 60; i++) {
      const m = await store.saveMessage(s.id, { role: 'user', content: `w${w} #${i}` });
      ids.push(m.id);
      if (i % 10 === 0) await store.saveMessage(other.id, { role: 'user', content: 'noise' });
    }
  }));
  t.same(await pageAll(store, s.id, 7, 'backward'), ids, 'backward pages (before) cover the history in acknowledgement order');
  t.same(await pageAll(store, s.id, 13, 'forward'), ids, 'forward pages (after) too');
  const newest = await store.getHistory(s.id, { limit: 5 });
  t.same(newest.messages.map((m) => m.id), ids.slice(-5), 'no cursor: the newest page, oldest first');
  t.equal(newest.has_more, true);
  await t.rejects(store.getHistory(s.id, { before: 'msg_unknown' }), { code: 'NOT_FOUND', message: /before/ });
  t.equal((await store.getSession(s.id)).message_count, 240);
});

t.test('reads between writes: the in-memory tail and LevelDB agree on every page', async (t) => {
  const store = await openStore(t, undefined, { sync: false });
  const s = await store.createSession();
  const ids: string[] = [];
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 50; i++) ids.push((await store.saveMessage(s.id, { role: 'user', content: `r${round} ${i}` })).id);
    const newest = await store.getHistory(s.id, { limit: 10 });
    t.same(newest.messages.map((m) => m.id), ids.slice(-10), `round ${round}: the newest page includes the latest writes`);
    t.same(await pageAll(store, s.id, 9, 'backward'), ids, `round ${round}: backward paging across the tail boundary`);
    t.same(await pageAll(store, s.id, 11, 'forward'), ids, `round ${round}: forward paging across the tail boundary`);
  }
  const mid = await store.getHistory(s.id, { before: ids[200]!, limit: 100 });
  t.same(mid.messages.map((m) => m.id), ids.slice(100, 200));
  const newest = await store.getHistory(s.id, { limit: 1 });
  t.throws(() => {
    (newest.messages[0] as { content: string }).content = 'changed';
  }, TypeError, 'messages shared from the cache cannot be changed by a reader');
});

t.test('a 100k-message session pages correctly from both ends and the middle', async (t) => {
  const store = await openStore(t, undefined, { sync: false });
  const s = await store.createSession();
  const N = 100_000;
  const doc = {
    format: 'tabagent.session',
    version: 1,
    session: { id: 'big' },
    messages: Array.from({ length: N }, (_, i) => ({ id: `m${i}`, role: i % 2 ? 'assistant' : 'user', content: `message ${i}`, created_at: new Date(1e12 + i).toISOString() })),
  };
  await store.importSession(doc);
  await store.saveMessage('big', { role: 'user', content: 'after the import' });
  t.equal((await store.getSession('big')).message_count, N + 1);
  const newest = await store.getHistory('big', { limit: 100 });
  t.equal(newest.messages[99]?.content, 'after the import');
  t.equal(newest.messages[0]?.id, `m${N - 99}`);
  const middle = await store.getHistory('big', { before: 'm50000', limit: 3 });
  t.same(middle.messages.map((m) => m.id), ['m49997', 'm49998', 'm49999']);
  const oldest = await store.getHistory('big', { from: 'start', limit: 2 });
  t.same(oldest.messages.map((m) => m.id), ['m0', 'm1']);
  t.equal((await store.getHistory('big', { after: `m${N - 2}`, limit: 10 })).has_more, false);
  let seen = 0;
  let cursor: string | null = 'm0';
  let expected = 1;
  while (cursor) {
    const page = await store.getHistory('big', { after: cursor, limit: 1000 });
    for (const m of page.messages) {
      if (m.id !== `m${expected}` && expected < N) t.fail(`out of order at ${expected}: ${m.id}`);
      expected++;
      seen++;
    }
    cursor = page.next_cursor;
  }
  t.equal(seen, N, 'every message after m0 exactly once');
  t.same((await store.getHistory(s.id)).messages, [], 'the other session is untouched');
  t.same(await store.deleteSession('big'), { session_id: 'big', deleted: true, messages_deleted: N + 1 });
  await t.rejects(store.getHistory('big'), { code: 'NOT_FOUND' });
});

t.test('everything survives close and reopen', async (t) => {
  const dir = tmpDir(t);
  let store = await ConversationStore.open({ dir });
  const s = await store.createSession({ title: 'persist' });
  const m = await store.saveMessage(s.id, { role: 'user', content: 'remember me' });
  await store.saveInferenceSettings('tiny', { temperature: 0.7 });
  await store.close();
  store = await openStore(t, dir);
  t.equal((await store.getSession(s.id)).title, 'persist');
  t.same((await store.getHistory(s.id)).messages, [m]);
  const next = await store.saveMessage(s.id, { role: 'assistant', content: 'I do' });
  t.same((await store.getHistory(s.id)).messages.map((x) => x.id), [m.id, next.id], 'sequence numbers continue after a reopen');
  t.same((await store.getInferenceSettings('tiny')).settings, { temperature: 0.7, max_new_tokens: 1024, top_k: 50, top_p: 0.9, repetition_penalty: 1.2 });
});

t.test('inference settings: defaults of the original, saved per model', async (t) => {
  const store = await openStore(t);
  t.same(await store.getInferenceSettings('none'), {
    model: 'none',
    settings: { temperature: 0.3, max_new_tokens: 1024, top_k: 50, top_p: 0.9, repetition_penalty: 1.2 },
    saved: false,
    updated_at: null,
  });
  const saved = await store.saveInferenceSettings('m1', { top_k: 5, custom_flag: true });
  t.match(saved, { model: 'm1', saved: true, settings: { top_k: 5, custom_flag: true, temperature: 0.3 } });
  t.match(await store.getInferenceSettings('m1'), { saved: true, settings: { top_k: 5, custom_flag: true } });
  t.equal((await store.getInferenceSettings('m2')).saved, false, 'settings are per model');
});

t.test('export and import round trip; conflicts and bad documents are clear', async (t) => {
  const store = await openStore(t);
  const s = await store.createSession({ title: 'to export', metadata: { tab: 3 } });
  await store.saveMessage(s.id, { role: 'system', content: 'be brief' });
  await store.saveMessage(s.id, { role: 'user', content: 'hi' });
  await store.saveMessage(s.id, { role: 'assistant', content: 'hel', partial: true });
  const doc = await store.exportSession(s.id);
  t.match(doc, { format: 'tabagent.session', version: 1, session: { id: s.id, title: 'to export', metadata: { tab: 3 } } });
  t.equal(doc.messages.length, 3);

  await t.rejects(store.importSession(doc), { code: 'CONFLICT', message: /on_conflict 'new_id'/ });
  const copy = await store.importSession(JSON.parse(JSON.stringify(doc)), 'new_id');
  t.not(copy.session.id, s.id);
  t.same(
    (await store.getHistory(copy.session.id)).messages.map(({ session_id: _s, ...m }) => m),
    doc.messages,
    'the copy has the same messages, ids and flags',
  );

  const edited = { ...doc, messages: doc.messages.slice(0, 1) };
  const replaced = await store.importSession(edited, 'replace');
  t.equal(replaced.replaced, true);
  t.equal((await store.getHistory(s.id)).messages.length, 1, 'replace drops the old history');
  t.equal((await store.getSession(s.id)).message_count, 1);

  const bad = JSON.parse(JSON.stringify(doc));
  bad.session.id = 'fresh';
  bad.messages[1].role = 'robot';
  await t.rejects(store.importSession(bad), { code: 'VALIDATION_ERROR', message: /messages\.1\.role/ });
  bad.messages[1].role = 'user';
  bad.messages[2].id = bad.messages[0].id;
  await t.rejects(store.importSession(bad), { code: 'VALIDATION_ERROR', message: /messages\.2\.id.*repeats messages\.0\.id/ });
  await t.rejects(store.importSession({ format: 'other', version: 1 }), { code: 'VALIDATION_ERROR', message: /format/ });
  await t.rejects(store.getSession('fresh'), { code: 'NOT_FOUND' }, 'a rejected import leaves nothing behind');
});

t.test('a store locked by another process is refused with a message naming the holder', async (t) => {
  const dir = tmpDir(t);
  const holder = spawn(process.execPath, ['--import', 'tsx', '-e', `
    const { ConversationStore } = await import(${JSON.stringify(path.resolve('src/runtime/storage/store.ts'))});
    await ConversationStore.open({ dir: ${JSON.stringify(dir)} });
    process.stdout.write('open\\n');
    setInterval(() => {}, 1000);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on('data', (d: Buffer) => d.toString().includes('open') && resolve());
    holder.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  const err = await ConversationStore.open({ dir }).catch((e: unknown) => e);
  t.match(err, {
    code: 'IO_ERROR',
    message: new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is locked: another TabAgent process \\(pid ${holder.pid}.*kill ${holder.pid}`),
    details: { reason: 'locked' },
  });
  const repair = await run(['db', 'repair', '--data-dir', path.dirname(dir)]);
  t.equal(repair.code, 1, 'tabagent db repair refuses while the store is in use');
  t.match(repair.stderr, `is locked: another TabAgent process (pid ${holder.pid}`);
});

t.test('a damaged store is refused with how to repair it, and repair recovers the data', async (t) => {
  const dir = tmpDir(t);
  const store = await ConversationStore.open({ dir });
  const s = await store.createSession({ id: 'keep' });
  for (let i = 0; i < 20; i++) await store.saveMessage(s.id, { role: 'user', content: `m${i}` });
  await store.close();
  const manifest = fs.readdirSync(dir).find((f) => f.startsWith('MANIFEST-'))!;
  fs.writeFileSync(path.join(dir, manifest), Buffer.alloc(300, 0x5a));
  const err = await ConversationStore.open({ dir }).catch((e: unknown) => e);
  t.match(err, { code: 'IO_ERROR', message: /is damaged .*tabagent db repair/, details: { reason: 'corrupt' } });

  const repair = await run(['db', 'repair', '--data-dir', path.dirname(dir)]);
  t.equal(repair.code, 0, `tabagent db repair succeeds: ${repair.stderr}`);
  t.match(repair.stdout, `repaired ${dir}: 1 sessions, 20 messages`, 'and says what it recovered');
  const reopened = await openStore(t, dir);
  t.equal((await reopened.getHistory('keep', { limit: 100 })).messages.length, 20, 'every message is back after the repair');
});

t.test('a store whose CURRENT file is gone is refused, not silently emptied', async (t) => {
  const dir = tmpDir(t);
  const store = await ConversationStore.open({ dir });
  await store.createSession({ id: 'keep' });
  await store.close();
  fs.rmSync(path.join(dir, 'CURRENT'));
  await t.rejects(ConversationStore.open({ dir }), { message: /CURRENT file is missing.*tabagent db repair/ });
});

t.test('fitHistoryToContext keeps system messages and the newest whole turns', async (t) => {
  const msg = (role: string, content: string): { role: string; content: string } => ({ role, content });
  const history = [
    msg('system', 'sys'),
    msg('user', 'q1'),
    msg('assistant', 'a1'),
    msg('user', 'q2'),
    msg('assistant', 'a2'),
    msg('tool', 't2'),
    msg('user', 'q3'),
  ];
  const countTokens = (): number => 10;
  const all = fitHistoryToContext(history, { contextTokens: 100, reserveTokens: 10, countTokens });
  t.same(all, { messages: history, dropped: 0, tokens: 70 });
  const fit = fitHistoryToContext(history, { contextTokens: 60, reserveTokens: 10, countTokens });
  t.same(fit.messages.map((m) => m.content), ['sys', 'q2', 'a2', 't2', 'q3'], 'the oldest turn is dropped whole');
  t.equal(fit.dropped, 2);
  const tight = fitHistoryToContext(history, { contextTokens: 45, reserveTokens: 10, countTokens });
  t.same(tight.messages.map((m) => m.content), ['sys', 'q3'], 'a turn that does not fit whole is dropped, and all older ones');
  t.throws(() => fitHistoryToContext(history, { contextTokens: 25, reserveTokens: 10, countTokens }), { code: 'BAD_REQUEST', message: /newest turn \(10 tokens\) and the system messages \(10 tokens\) do not fit.*25 tokens less 10 reserved/ });
  const asMessages = history as unknown as Message[];
  t.equal(fitHistoryToContext(asMessages, { contextTokens: 1000, reserveTokens: 0, countTokens: (m) => m.content.length }).tokens, 15);
});
