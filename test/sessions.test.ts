/**
 * Conversations on the real server process: the HTTP session routes, concurrent writers over HTTP,
 * WebSocket and native messaging, chat with session_id, persistence across a clean restart and a
 * SIGKILL, and a store locked by another server refused by the CLI.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import WebSocket from 'ws';
import { TabAgentNativeClient } from '../src/client/native-messaging.js';
import { portFromStreams } from '../src/transports/native/stream-port.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { concurrentWriters, readAllHistory, writeMessages, type Call } from './helpers/sessions.js';
import { raw } from './transports/http/client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'src/cli.ts');
const HOST_MAIN = path.join(ROOT, 'src/transports/native/host-main.ts');

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tabagent-sessions-'));
const dataDir = path.join(root, 'data');
const children: { kill(signal: NodeJS.Signals): unknown; exitCode: number | null }[] = [];
t.teardown(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

/** The limits these tests hit, small enough to reach cheaply; one inference worker is plenty for the tiny model. */
const ENV = { TABAGENT_STORAGE__MAX_MESSAGE_BYTES: '4096', TABAGENT_INFERENCE__CONTEXT_SIZE: '1024', TABAGENT_INFERENCE__WORKERS: '1' };

async function start(opts: { model?: boolean } = {}): Promise<ServerProcess> {
  // Loading the model in worker threads can take a while when the machine is busy.
  const s = await startServerProcess({ mode: 'both', dataDir, args: ['--no-stdio'], env: ENV, startTimeoutMs: 90_000, ...(opts.model ? { model: 'tiny' as const } : {}) });
  children.push(s.child);
  return s;
}

interface HttpReply {
  status: number;
  type: string;
  body: any;
}

async function http(s: ServerProcess, method: string, p: string, body?: unknown): Promise<HttpReply> {
  const opts: { headers?: Record<string, string>; body?: string } = {};
  if (body !== undefined) opts.headers = { 'content-type': 'application/json' };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const r = await raw(s.url, method, p, opts);
  return { status: r.status, type: String(r.headers['content-type'] ?? ''), body: r.text ? r.json() : undefined };
}

/** save_message and get_history as a browser page would call them over plain HTTP. */
function httpCall(s: ServerProcess): Call {
  return async (route, payload) => {
    const { session_id, ...rest } = payload as Record<string, unknown> & { session_id: string };
    let r: HttpReply;
    if (route === 'save_message') r = await http(s, 'POST', `/v1/sessions/${session_id}/messages`, rest);
    else if (route === 'get_history') r = await http(s, 'GET', `/v1/sessions/${session_id}/history?${new URLSearchParams(rest as Record<string, string>)}`);
    else throw new Error(`httpCall: no HTTP mapping for ${route} in this test`);
    if (r.status !== 200) throw Object.assign(new Error(`${route}: HTTP ${r.status} ${JSON.stringify(r.body)}`), { code: r.body?.code });
    return r.body;
  };
}

interface WsConn {
  call: Call;
  /** Sends a request and collects its chunk frames until the final reply. */
  stream(route: string, payload: unknown, onChunk: (data: any, requestId: string) => void): { requestId: string; done: Promise<any> };
  close(): void;
}

async function openWs(s: ServerProcess): Promise<WsConn> {
  const ws = new WebSocket(s.wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let n = 0;
  const pending = new Map<string, { resolve(f: any): void; onChunk?: (data: any) => void }>();
  // A socket that drops (the server died) fails what it still had in flight.
  ws.on('close', () => {
    for (const p of pending.values()) p.resolve({ success: false, error: { code: 'UNAVAILABLE', message: 'the WebSocket closed' } });
    pending.clear();
  });
  ws.on('message', (data: Buffer) => {
    const f = JSON.parse(data.toString());
    const p = pending.get(f.request_id);
    if (!p) return;
    if (f.event === 'chunk') return p.onChunk?.(f.data);
    pending.delete(f.request_id);
    p.resolve(f);
  });
  const send = (route: string, payload: unknown, onChunk?: (data: any) => void): { requestId: string; done: Promise<any> } => {
    const requestId = `ws-${++n}`;
    const done = new Promise<any>((resolve) => pending.set(requestId, onChunk ? { resolve, onChunk } : { resolve }));
    ws.send(JSON.stringify({ request_id: requestId, route, payload }));
    return { requestId, done };
  };
  return {
    async call(route, payload) {
      const f = await send(route, payload).done;
      if (!f.success) throw Object.assign(new Error(`${route}: ${f.error.code} ${f.error.message}`), f.error);
      return f.data;
    },
    stream(route, payload, onChunk) {
      const r = send(route, payload, (d) => onChunk(d, r.requestId));
      return r;
    },
    close: () => ws.close(),
  };
}

/** A native-messaging host spawned with pipes, as a browser starts it, relaying to the running server. */
function openNative(): { call: Call; close(): Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', HOST_MAIN, '--data-dir', dataDir], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, TABAGENT_LOG_LEVEL: 'warn' },
  });
  children.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const client = new TabAgentNativeClient(portFromStreams(child.stdout, child.stdin));
  return {
    call: (route, payload) => client.request(route, payload, { timeoutMs: 30_000 }),
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}

/** Every message of a session, oldest first, read over HTTP. */
const history = (s: ServerProcess, id: string): Promise<any[]> => readAllHistory(httpCall(s), id);

let server: ServerProcess;
/** Each session's full history as the first server left it, to compare after the restarts. */
const snapshot = new Map<string, any[]>();

t.before(async () => {
  server = await start({ model: true });
});

t.test('the HTTP session routes', async (t) => {
  const created = await http(server, 'POST', '/v1/sessions', { id: 'trip-1', title: 'Trip' });
  t.equal(created.status, 200);
  t.match(created.body, { id: 'trip-1', title: 'Trip', message_count: 0 });
  const dup = await http(server, 'POST', '/v1/sessions', { id: 'trip-1' });
  t.equal(dup.status, 409, 'a taken id is a conflict');
  t.match(dup.type, /application\/problem\+json/);
  t.match(dup.body, { code: 'CONFLICT', detail: /trip-1/ });
  const other = (await http(server, 'POST', '/v1/sessions', {})).body;
  t.match(other, { id: /^ses_/, title: '' }, 'an empty body creates a session with a generated id');

  const m1 = await http(server, 'POST', '/v1/sessions/trip-1/messages', { message: { role: 'user', content: 'Where to?' } });
  t.equal(m1.status, 200);
  t.match(m1.body, { id: /^msg_/, session_id: 'trip-1', role: 'user', content: 'Where to?' });
  const m2 = (await http(server, 'POST', '/v1/sessions/trip-1/messages', { message: { id: 'client-2', role: 'assistant', content: 'Rome.' } })).body;
  t.equal(m2.id, 'client-2', 'a client-chosen message id is kept');
  const retry = await http(server, 'POST', '/v1/sessions/trip-1/messages', { message: { id: 'client-2', role: 'assistant', content: 'Rome.' } });
  t.same(retry.body, m2, 'a retried save with the same id answers the stored message, not a second copy');

  const listed = (await http(server, 'GET', '/v1/sessions')).body;
  t.same(listed.sessions.slice(0, 2).map((s: any) => s.id), ['trip-1', other.id], 'most recently updated first');
  const page1 = (await http(server, 'GET', '/v1/sessions?limit=1')).body;
  t.equal(page1.sessions.length, 1);
  const page2 = (await http(server, 'GET', `/v1/sessions?limit=1&cursor=${encodeURIComponent(page1.next_cursor)}`)).body;
  t.equal(page2.sessions[0].id, other.id, 'the cursor continues the list');

  t.match((await http(server, 'GET', '/v1/sessions/trip-1')).body, { id: 'trip-1', message_count: 2 });
  const renamed = await http(server, 'PATCH', '/v1/sessions/trip-1', { title: 'Rome trip' });
  t.match(renamed.body, { id: 'trip-1', title: 'Rome trip' });
  t.equal((await http(server, 'GET', '/v1/sessions/trip-1')).body.title, 'Rome trip');

  const newest = (await http(server, 'GET', '/v1/sessions/trip-1/history?limit=1')).body;
  t.same(newest.messages.map((m: any) => m.content), ['Rome.']);
  t.equal(newest.has_more, true);
  const older = (await http(server, 'GET', `/v1/sessions/trip-1/history?limit=1&before=${newest.next_cursor}`)).body;
  t.same(older.messages.map((m: any) => m.content), ['Where to?']);
  t.equal(older.next_cursor, null, 'the last page says so');

  const exported = await http(server, 'GET', '/v1/sessions/trip-1/export');
  t.match(exported.body, { format: 'tabagent.session', version: 1, session: { id: 'trip-1', title: 'Rome trip' } });
  t.same(exported.body.messages.map((m: any) => m.content), ['Where to?', 'Rome.']);
  const clash = await http(server, 'POST', '/v1/sessions/import', { data: exported.body });
  t.equal(clash.status, 409);
  t.match(clash.body.detail, /on_conflict 'new_id'/, 'the conflict says how to import anyway');
  const imported = await http(server, 'POST', '/v1/sessions/import', { data: exported.body, on_conflict: 'new_id' });
  t.equal(imported.status, 200);
  t.equal(imported.body.imported_messages, 2);
  const copy = await history(server, imported.body.session.id);
  t.same(
    copy.map(({ session_id: _s, ...m }) => m),
    exported.body.messages,
    'the imported copy has the same messages, ids and times',
  );

  const settings = await http(server, 'PUT', '/v1/inference-settings/tiny-chat', { settings: { temperature: 0.7 } });
  t.equal(settings.status, 200);
  t.match((await http(server, 'GET', '/v1/inference-settings/tiny-chat')).body, { saved: true, settings: { temperature: 0.7, top_k: 50 } });

  const gone = await http(server, 'DELETE', `/v1/sessions/${imported.body.session.id}`);
  t.same(gone.body, { session_id: imported.body.session.id, deleted: true, messages_deleted: 2 });
  t.equal((await http(server, 'GET', `/v1/sessions/${imported.body.session.id}`)).status, 404, 'a deleted session is gone');
  t.equal((await http(server, 'GET', `/v1/sessions/${imported.body.session.id}/history`)).status, 404, 'and so is its history');
});

t.test('bad input over HTTP: a clear error naming what was wrong, and nothing saved', async (t) => {
  const id = (await http(server, 'POST', '/v1/sessions', { id: 'strict' })).body.id;
  const unknown = await http(server, 'GET', '/v1/sessions/nobody');
  t.equal(unknown.status, 404);
  t.match(unknown.body, { code: 'NOT_FOUND', detail: /nobody/ });
  t.match(await http(server, 'POST', '/v1/sessions/nobody/messages', { message: { role: 'user', content: 'x' } }), { status: 404, body: { code: 'NOT_FOUND' } });
  t.match(await http(server, 'POST', `/v1/sessions/${id}/messages`, { message: { role: 'robot', content: 'x' } }), {
    status: 400,
    body: { code: 'VALIDATION_ERROR', detail: /message\.role/ },
  });
  t.match(await http(server, 'GET', `/v1/sessions/${id}/history?limit=many`), { status: 400, body: { detail: /limit must be an integer/ } });
  const big = await http(server, 'POST', `/v1/sessions/${id}/messages`, { message: { role: 'user', content: 'y'.repeat(5000) } });
  t.equal(big.status, 413);
  t.match(big.body.detail, /the limit is 4096 bytes \(storage\.max_message_bytes\)/, 'an oversized message names the limit and the setting');
  const badImport = await http(server, 'POST', '/v1/sessions/import', {
    data: { format: 'tabagent.session', version: 1, session: { id: 'half' }, messages: [{ id: 'a', role: 'user', content: 'ok', created_at: new Date().toISOString() }, { id: 'b', role: 'user' }] },
  });
  t.match(badImport, { status: 400, body: { detail: /data\.messages\.1\.content/ } });
  t.equal((await http(server, 'GET', '/v1/sessions/half')).status, 404, 'a rejected import leaves nothing behind');
  t.equal((await http(server, 'GET', `/v1/sessions/${id}`)).body.message_count, 0, 'no rejected message was saved');
});

t.test('concurrent writers over HTTP, WebSocket and native messaging: every message once, each writer in order', async (t) => {
  const session = (await http(server, 'POST', '/v1/sessions', { id: 'shared', title: 'three carriers' })).body.id;
  const ws1 = await openWs(server);
  const ws2 = await openWs(server);
  const native1 = openNative();
  const native2 = openNative();
  t.teardown(async () => {
    ws1.close();
    ws2.close();
    await Promise.all([native1.close(), native2.close()]);
  });
  const writers = [
    { name: 'http-a', call: httpCall(server) },
    { name: 'http-b', call: httpCall(server) },
    { name: 'ws-a', call: ws1.call },
    { name: 'ws-b', call: ws2.call },
    { name: 'native-a', call: native1.call },
    { name: 'native-b', call: native2.call },
  ];
  const result = await concurrentWriters(writers, session, 30, native1.call);
  t.same(result.missing, [], 'every acknowledged message is in the history');
  t.equal(result.duplicates, 0, 'none twice');
  t.equal(result.unexpected, 0, 'and nothing that was not acknowledged');
  t.same(result.inOrder, writers.map(() => true), "each writer's messages are in the order it wrote them");
  t.equal(result.history.length, 180);
  for (const w of writers) t.equal(result.history.filter((m) => m.content.startsWith(`${w.name} `)).length, 30, `${w.name}: 30 messages`);
  t.same(await readAllHistory(ws1.call, session, 7), result.history, 'the WebSocket reader pages the same history');
  t.equal((await http(server, 'GET', `/v1/sessions/${session}`)).body.message_count, 180);
});

t.test('chat with session_id: the user message and the reply are saved', async (t) => {
  const ws = await openWs(server);
  t.teardown(() => ws.close());
  await http(server, 'POST', '/v1/sessions', { id: 'chat-1' });
  const reply = await ws.call('chat', { model: server.modelId, session_id: 'chat-1', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 8 });
  t.equal(reply.session_id, 'chat-1');
  const saved = await history(server, 'chat-1');
  t.same(saved.map((m) => m.role), ['user', 'assistant']);
  t.equal(saved[0].content, 'Hello there');
  t.equal(saved[1].content, reply.message.content, 'the saved reply is the text the client got');
  t.equal(saved[1].model, server.modelId);
  t.match(saved[1].usage, { completion_tokens: reply.usage.completion_tokens });
  t.notOk(saved[1].partial, 'a finished reply is not marked partial');

  const second = await ws.call('chat', { model: server.modelId, session_id: 'chat-1', messages: [{ role: 'user', content: 'And again' }], max_tokens: 8 });
  t.ok(second.usage.prompt_tokens > reply.usage.prompt_tokens, 'the second turn was prompted with the stored conversation');
  t.same((await history(server, 'chat-1')).map((m) => m.content), ['Hello there', reply.message.content, 'And again', second.message.content]);
});

t.test('chat with session_id, cancelled: the partial reply is saved and marked', async (t) => {
  const ws = await openWs(server);
  t.teardown(() => ws.close());
  let streamed = '';
  let cancelled: Promise<unknown> | undefined;
  const run = ws.stream(
    'chat',
    {
      model: server.modelId,
      session_id: 'chat-cancel',
      messages: [{ role: 'user', content: 'Tell me a long story' }],
      max_tokens: 900,
      stream: true,
      // The grammar holds the end of the reply off for 800 characters, so the cancel always lands mid-reply.
      response_format: { type: 'json_schema', json_schema: { name: 'story', schema: { type: 'object', properties: { story: { type: 'string', minLength: 800 } }, required: ['story'] } } },
    },
    (chunk, requestId) => {
      streamed += chunk.delta;
      cancelled ??= ws.call('stop_generation', { request_id: requestId });
    },
  );
  const final = await run.done;
  await cancelled;
  t.equal(final.success, true);
  t.equal(final.data.finish_reason, 'cancelled', 'the stream ended by the cancel');
  t.equal(final.data.message.content, streamed, 'the final text is what was streamed');
  const saved = await history(server, 'chat-cancel');
  t.same(saved.map((m) => m.role), ['user', 'assistant'], 'chat created the session and saved both messages');
  t.match(saved[1], { role: 'assistant', content: final.data.message.content, partial: true }, 'the cut-short reply is saved as partial');
});

t.test('chat with a history longer than the context: the oldest turns are left out, the stored history is kept', async (t) => {
  const ws = await openWs(server);
  t.teardown(() => ws.close());
  const id = 'long-chat';
  await ws.call('create_session', { id });
  await ws.call('save_message', { session_id: id, message: { role: 'system', content: 'You are terse.' } });
  // 40 messages of about 200 tokens each: several times the 1024-token context.
  for (let i = 0; i < 40; i++) {
    await ws.call('save_message', { session_id: id, message: { role: i % 2 ? 'assistant' : 'user', content: `turn ${i}: ${'lorem ipsum dolor sit amet '.repeat(8)}` } });
  }
  const reply = await ws.call('chat', { model: server.modelId, session_id: id, messages: [{ role: 'user', content: 'Sum it up' }], max_tokens: 8 });
  t.ok(reply.history_dropped > 0, `older turns were left out of the prompt (${reply.history_dropped})`);
  t.ok(reply.usage.prompt_tokens <= 1024, `the prompt fits the context (${reply.usage.prompt_tokens} tokens)`);
  t.equal((await history(server, id)).length, 43, 'the stored history keeps every message');
});

t.test('everything survives a clean restart', async (t) => {
  const { sessions } = (await http(server, 'GET', '/v1/sessions?limit=1000')).body;
  for (const s of sessions) snapshot.set(s.id, await history(server, s.id));
  t.ok(snapshot.size >= 6);
  const settings = (await http(server, 'GET', '/v1/inference-settings/tiny-chat')).body;
  t.equal(await server.stop(), 0, 'the server stopped cleanly');

  server = await start();
  const after = (await http(server, 'GET', '/v1/sessions?limit=1000')).body.sessions;
  t.same(after.map((s: any) => s.id), sessions.map((s: any) => s.id), 'the same sessions, in the same order');
  t.same(after, sessions, 'with the same titles, times and counts');
  for (const [id, messages] of snapshot) t.same(await history(server, id), messages, `${id}: the same history`);
  t.same((await http(server, 'GET', '/v1/inference-settings/tiny-chat')).body, settings, 'inference settings too');
  const next = (await http(server, 'POST', '/v1/sessions/trip-1/messages', { message: { role: 'user', content: 'Still here?' } })).body;
  t.same((await history(server, 'trip-1')).map((m) => m.id), [...snapshot.get('trip-1')!.map((m) => m.id), next.id], 'new messages follow the old ones');
});

t.test('a second server on the same data directory refuses to start and names the holder', async (t) => {
  const second = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--mode', 'http', '--port', '0', '--webrtc-port', '0', '--data-dir', dataDir], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TABAGENT_LOG_LEVEL: 'silent' },
  });
  children.push(second);
  let stderr = '';
  second.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
  t.equal(code, 1, 'exit code 1');
  const store = path.join(dataDir, 'conversations');
  t.match(stderr, `tabagent: the conversation store ${store} is locked: another TabAgent process (pid ${server.pid}`, 'the message names the store and the pid holding it');
  t.match(stderr, `Stop that process (kill ${server.pid}) or start this one with a different --data-dir.`, 'and says what to do');
  t.equal(stderr.trim().split('\n').length, 1, 'one line, no stack trace');
  t.equal((await http(server, 'GET', '/v1/sessions/trip-1')).status, 200, 'the running server is unaffected');
});

t.test('a server killed with SIGKILL in a write burst keeps every acknowledged message', async (t) => {
  const session = (await http(server, 'POST', '/v1/sessions', { id: 'burst' })).body.id;
  const ws = await openWs(server);
  const acked: string[] = [];
  let kill!: () => void;
  const killed = new Promise<void>((r) => (kill = r));
  // 8 writers over one socket; the server dies after the 150th acknowledgement, with writes in flight.
  const writers = Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; ; i++) {
      try {
        const m = await ws.call('save_message', { session_id: session, message: { role: 'user', content: `w${w} ${i}` } });
        acked.push(m.id);
        if (acked.length === 150) kill();
      } catch {
        return;
      }
    }
  });
  void killed.then(() => server.child.kill('SIGKILL'));
  await Promise.race([Promise.all(writers), new Promise<void>((r) => server.child.once('exit', () => setTimeout(r, 200)))]);
  ws.close();
  t.equal(await server.stop(), null, 'the server died by the signal');
  t.ok(acked.length >= 150);

  server = await start();
  const stored = new Set((await history(server, session)).map((m) => m.id));
  t.same(acked.filter((id) => !stored.has(id)), [], `all ${acked.length} acknowledged messages are there`);
  t.equal((await http(server, 'GET', `/v1/sessions/${session}`)).body.message_count, stored.size, 'the session record matches its messages');
  for (const [id, messages] of snapshot) t.same((await history(server, id)).slice(0, messages.length), messages, `${id}: older history intact`);
  await writeMessages(httpCall(server), session, 3, 'after');
  t.equal((await http(server, 'GET', `/v1/sessions/${session}`)).body.message_count, stored.size + 3, 'and it takes new writes');
  t.equal(await server.stop(), 0);
});
