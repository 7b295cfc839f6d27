import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { RouterActor } from '../../src/actors/router.js';
import { StorageActor } from '../../src/actors/storage.js';
import { Supervisor } from '../../src/actors/supervisor.js';
import { Addresses } from '../../src/bus/addresses.js';
import { Bus } from '../../src/bus/bus.js';
import { allRoutes } from '../../src/protocol/routes/index.js';
import { silentLog } from '../../src/runtime/logger.js';
import { Gateway } from '../../src/transports/gateway.js';
import { concurrentWriters, type Call } from '../helpers/sessions.js';
import { settle } from '../helpers/wait.js';

let n = 0;
async function setup(t: { teardown(fn: () => unknown): void }, maxMessageBytes = 1024 * 1024) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tabagent-storage-actor-'));
  const bus = new Bus();
  const supervisor = new Supervisor(bus, silentLog, { initialMs: 10, maxMs: 100, resetAfterMs: 1000 });
  const dir = path.join(root, 'conversations');
  await supervisor.spawn({ address: Addresses.storage, create: () => new StorageActor(bus, silentLog, { dir, sync: true, maxMessageBytes }) });
  await supervisor.spawn({ address: Addresses.router, create: () => new RouterActor(bus, silentLog, allRoutes) });
  t.teardown(async () => {
    await supervisor.stopAll();
    fs.rmSync(root, { recursive: true, force: true });
  });
  const gw = new Gateway(bus, 'test');
  const call: Call = (route, payload) => gw.call(route, payload, `r${++n}`);
  return { call, supervisor, dir };
}

t.test('the session routes work through the bus and the router', async (t) => {
  const { call } = await setup(t);
  const s = await call('create_session', { title: 'Trip' });
  t.match(s, { id: /^ses_/, title: 'Trip', message_count: 0 });
  t.match(await call('create_session', undefined), { id: /^ses_/ }, 'the payload is optional');
  const m = await call('save_message', { session_id: s.id, message: { role: 'user', content: 'Where to?' } });
  t.match(m, { session_id: s.id, role: 'user', content: 'Where to?' });
  const history = await call('get_history', { session_id: s.id, limit: '10' });
  t.same(history.messages.map((x: { id: string }) => x.id), [m.id], 'a numeric query string is accepted as limit');
  t.equal((await call('rename_session', { session_id: s.id, title: 'Rome' })).title, 'Rome');
  t.equal((await call('get_session', { session_id: s.id })).message_count, 1);
  t.equal((await call('list_sessions', { limit: '1' })).sessions.length, 1);

  const doc = await call('export_session', { session_id: s.id });
  const imported = await call('import_session', { data: doc, on_conflict: 'new_id' });
  t.equal(imported.imported_messages, 1);

  t.match(await call('get_inference_settings', { model: 'tiny' }), { settings: { temperature: 0.3, top_k: 50 }, saved: false });
  await call('save_inference_settings', { model: 'tiny', settings: { temperature: 1 } });
  t.match(await call('get_inference_settings', { model: 'tiny' }), { settings: { temperature: 1, top_k: 50 }, saved: true });
  await call('save_inference_settings', { repo_id: 'org/Model-GGUF', variant: 'Q4_K_M', settings: { top_p: 0.5 } });
  t.match(await call('get_inference_settings', { repo_id: 'org/Model-GGUF', variant: 'Q4_K_M' }), { settings: { top_p: 0.5 }, saved: true }, "the original's repo_id/variant names work");

  t.same(await call('delete_session', { session_id: s.id }), { session_id: s.id, deleted: true, messages_deleted: 1 });
  await t.rejects(call('get_session', { session_id: s.id }), { code: 'NOT_FOUND', message: new RegExp(s.id) });
});

t.test('bad input gets an error that names the field', async (t) => {
  const { call } = await setup(t, 1000);
  const s = await call('create_session', {});
  await t.rejects(call('save_message', { session_id: s.id, message: { role: 'robot', content: 'x' } }), { code: 'VALIDATION_ERROR', message: /message\.role/ });
  await t.rejects(call('save_message', { session_id: s.id, message: { role: 'user' } }), { code: 'VALIDATION_ERROR', message: /message\.content/ });
  await t.rejects(call('save_message', { session_id: 'bad id!', message: { role: 'user', content: 'x' } }), { code: 'VALIDATION_ERROR', message: /session_id/ });
  await t.rejects(call('get_history', { session_id: s.id, limit: 'many' }), { code: 'VALIDATION_ERROR', message: /limit must be an integer/ });
  await t.rejects(call('get_history', { session_id: s.id, limit: 5000 }), { code: 'VALIDATION_ERROR', message: /limit must be at most 1000/ });
  await t.rejects(call('get_history', { session_id: s.id, before: 'a', after: 'b' }), { code: 'VALIDATION_ERROR', message: /either before or after/ });
  await t.rejects(call('import_session', { data: { format: 'tabagent.session', version: 1, session: { id: 'x' }, messages: [{ id: 'a', role: 'user' }] } }), {
    code: 'VALIDATION_ERROR',
    message: /data\.messages\.0\.content/,
  });
  await t.rejects(call('save_inference_settings', { model: 'm', settings: { temperature: 9 } }), { code: 'VALIDATION_ERROR', message: /settings\.temperature/ });
  await t.rejects(call('get_inference_settings', {}), { code: 'VALIDATION_ERROR', message: /model is required/ });
  await t.rejects(call('save_message', { session_id: 'nobody', message: { role: 'user', content: 'x' } }), { code: 'NOT_FOUND', message: /nobody/ });
  await t.rejects(call('save_message', { session_id: s.id, message: { role: 'user', content: 'y'.repeat(2000) } }), {
    code: 'PAYLOAD_TOO_LARGE',
    message: /limit is 1000 bytes \(storage\.max_message_bytes\)/,
  });
  t.equal((await call('get_session', { session_id: s.id })).message_count, 0, 'nothing was saved by the rejected requests');
});

t.test('concurrent writers through the bus: every acknowledged message once, each writer in order', async (t) => {
  const { call } = await setup(t);
  const s = await call('create_session', {});
  const writers = ['w1', 'w2', 'w3', 'w4'].map((name) => ({ name, call }));
  const result = await concurrentWriters(writers, s.id, 50, call);
  t.same(result.missing, []);
  t.equal(result.duplicates, 0);
  t.equal(result.unexpected, 0);
  t.same(result.inOrder, [true, true, true, true]);
  t.equal(result.history.length, 200);
});

t.test('a lost database handle crashes the actor; the supervisor restarts it and data is intact', async (t) => {
  const { call, supervisor } = await setup(t);
  const s = await call('create_session', { id: 'survivor' });
  await call('save_message', { session_id: s.id, message: { role: 'user', content: 'before' } });
  const actor = supervisor.get(Addresses.storage) as StorageActor;
  await (actor.store as unknown as { db: { close(): Promise<void> } }).db.close();
  await t.rejects(call('save_message', { session_id: s.id, message: { role: 'user', content: 'lost' } }), { code: /IO_ERROR|INTERNAL_ERROR|UNAVAILABLE/ });
  t.equal(await settle(() => supervisor.restarts(Addresses.storage), (n) => n > 0), 1, 'the supervisor restarted the storage actor');
  const after = await call('save_message', { session_id: s.id, message: { role: 'user', content: 'after' } });
  const history = await call('get_history', { session_id: s.id });
  t.same(history.messages.map((m: { content: string }) => m.content), ['before', 'after']);
  t.equal(after.content, 'after');
});
