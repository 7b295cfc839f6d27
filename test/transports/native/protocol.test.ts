/** Native-messaging protocol compliance: hosts spawned with pipes as a browser does, relaying to a real server. */
import path from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { TabAgentNativeClient } from '../../../src/client/native-messaging.js';
import { MAX_OUTBOUND_FRAME_BYTES } from '../../../src/transports/native/frame-codec.js';
import { portFromStreams } from '../../../src/transports/native/stream-port.js';
import { writeTestModel } from '../../../src/runtime/gguf/index.js';
import { cliPath, header, RawHost, startServer, stopServerIn, tempDir, type BackgroundServer } from './helpers.js';
import type { TapTest } from '../../helpers/tap.js';

const tmp = tempDir();
const dataDir = path.join(tmp.dir, 'data');
const coldDir = path.join(tmp.dir, 'cold');
const modelPath = path.join(tmp.dir, 'tiny.gguf');
let server: BackgroundServer;
const hosts: RawHost[] = [];

t.before(async () => {
  await writeTestModel(modelPath, { size: 'tiny' });
  server = await startServer(dataDir, ['--model', modelPath]);
});
// Whatever a failed test left behind: hosts, the test's server, and the server a relay started detached.
t.teardown(async () => {
  for (const h of hosts) if (h.child.exitCode === null) h.child.kill('SIGKILL');
  if (server?.child.exitCode === null) server.child.kill('SIGKILL');
  await stopServerIn(coldDir);
  tmp.remove();
});

function host(args: string[] = [], env: NodeJS.ProcessEnv = {}): RawHost {
  const h = new RawHost(['--data-dir', dataDir, ...args], env);
  hosts.push(h);
  return h;
}

function client(h: RawHost): TabAgentNativeClient {
  return new TabAgentNativeClient(portFromStreams(h.child.stdout!, h.child.stdin!));
}

/** Ends stdin, waits for exit, and checks that every stdout byte was a whole frame. */
async function finish(tt: TapTest, h: RawHost): Promise<void> {
  h.end();
  tt.equal(await h.exited, 0, 'stdin EOF: the host exits 0');
  tt.equal(h.strayBytes, 0, 'no stray byte on stdout: everything decoded as whole frames');
}

t.test('a frame split across writes is reassembled', async (tt) => {
  const h = host();
  const body = Buffer.from(JSON.stringify({ request_id: 'split', route: 'health' }));
  const bytes = Buffer.concat([header(body.length), body]);
  for (const piece of [bytes.subarray(0, 1), bytes.subarray(1, 3), bytes.subarray(3, 9), bytes.subarray(9)]) {
    h.write(piece);
    await new Promise((r) => setTimeout(r, 15));
  }
  const reply = await h.reply('split');
  tt.equal(reply.success, true);
  tt.equal(reply.data.status, 'ok');
  await finish(tt, h);
});

t.test('several frames in one write all get their own reply', async (tt) => {
  const h = host();
  const frames = ['a', 'b', 'c', 'd'].map((id) => {
    const body = Buffer.from(JSON.stringify({ request_id: id, route: id === 'd' ? 'system' : 'health' }));
    return Buffer.concat([header(body.length), body]);
  });
  h.write(Buffer.concat(frames));
  for (const id of ['a', 'b', 'c', 'd']) tt.equal((await h.reply(id)).success, true, `reply to ${id}`);
  tt.equal((await h.reply('d')).data.name, 'tabagent-server');
  await finish(tt, h);
});

t.test('malformed frames each get a clear error frame and the stream stays usable', async (tt) => {
  const h = host();
  h.write(header(0));
  const empty = await h.waitFor((f) => f.success === false && /empty frame/.test(f.error.message));
  tt.equal(empty.error.code, 'PROTOCOL_ERROR', 'zero-length frame');
  tt.equal(empty.request_id, null);

  const badUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
  h.write(Buffer.concat([header(badUtf8.length), badUtf8]));
  const utf8 = await h.waitFor((f) => f.success === false && /UTF-8/.test(f.error.message));
  tt.equal(utf8.error.code, 'JSON_ERROR', 'invalid UTF-8');

  const badJson = Buffer.from('{"request_id": "bj", "route": "health", ');
  h.write(Buffer.concat([header(badJson.length), badJson]));
  const json = await h.reply('bj');
  tt.equal(json.error.code, 'JSON_ERROR', 'invalid JSON, answered with the request_id it could read');
  tt.match(json.error.message, /not valid JSON/);

  h.send({ route: 'health', payload: null });
  const noId = await h.waitFor((f) => f.success === false && /request_id/.test(f.error.message));
  tt.equal(noId.error.code, 'PROTOCOL_ERROR', 'missing request_id');
  tt.equal(noId.request_id, null);

  h.send({ request_id: 'nr', route: 'no_such_route' });
  const unknown = await h.reply('nr');
  tt.equal(unknown.error.code, 'ROUTE_NOT_FOUND', 'unknown route');
  tt.ok(unknown.error.details.available.includes('health'), 'the error lists the routes');

  h.send({ request_id: 'after', route: 'health' });
  tt.equal((await h.reply('after')).success, true, 'a valid request after all that is served');
  await finish(tt, h);
});

t.test('a length over 64 MiB is refused at once, its bytes skipped, and nothing after it lost', async (tt) => {
  const h = host();
  const length = 64 * 1024 * 1024 + 1;
  h.write(header(length));
  const tooLarge = await h.waitFor((f) => f.success === false && f.error.code === 'PAYLOAD_TOO_LARGE');
  tt.same(tooLarge.error.details, { length, limit: 64 * 1024 * 1024 });
  const block = Buffer.alloc(1024 * 1024, 0x20);
  for (let sent = 0; sent < length; ) {
    const n = Math.min(block.length, length - sent);
    h.write(block.subarray(0, n));
    sent += n;
  }
  h.send({ request_id: 'next', route: 'health' });
  tt.equal((await h.reply('next')).success, true, 'the frame after the skipped one is answered');
  await finish(tt, h);
});

t.test('a request of 64 MiB, the most a browser may send, is accepted', async (tt) => {
  const h = host();
  const head = Buffer.from('{"request_id":"huge","route":"health","payload":{"pad":"');
  const tail = Buffer.from('"}}');
  const body = Buffer.alloc(64 * 1024 * 1024, 0x78);
  head.copy(body, 0);
  tail.copy(body, body.length - tail.length);
  h.write(header(body.length));
  h.write(body);
  const reply = await h.reply('huge');
  tt.equal(reply.success, true, 'answered like any other request');
  tt.equal(reply.data.status, 'ok');
  await finish(tt, h);
});

t.test('a frame truncated at EOF is reported, and in-flight work is answered before exit 0', async (tt) => {
  const h = host();
  h.send({ request_id: 'inflight', route: 'system' });
  h.write(Buffer.concat([header(100), Buffer.from('{"request_')]));
  h.end();
  tt.equal(await h.exited, 0, 'exit code 0 on EOF');
  tt.equal(h.frames.find((f) => f.request_id === 'inflight')?.success, true, 'the request sent before EOF was answered');
  const truncated = h.frames.find((f) => f.success === false && /ended inside a frame/.test(f.error.message));
  tt.ok(truncated, 'truncated frame reported');
  tt.equal(truncated?.error.code, 'PROTOCOL_ERROR');
  tt.match(truncated?.error.message, /10 of 100/);
  tt.equal(h.strayBytes, 0, 'no stray byte on stdout');
});

t.test('a reply over 1 MiB is split into continuation frames that the client reassembles', async (tt) => {
  const h = host();
  const c = client(h);
  const piece = 'x'.repeat(800 * 1024) + ' "quoted" \\ ünïcødé 🙂 ';
  for (let i = 0; i < 4; i++) {
    await c.request('save_message', { session_id: 'big', create_if_missing: true, message: { role: 'user', content: `${i}:${piece}` } });
  }
  const history = await c.request('get_history', { session_id: 'big', limit: 10 });
  tt.equal(history.messages.length, 4, 'all four messages came back');
  tt.equal(history.messages[3].content, `3:${piece}`, 'content is intact, quotes, backslashes and non-ASCII included');
  const parts = h.frames.filter((f) => f.event === 'continuation');
  tt.ok(parts.length >= 3, `the ~3.2 MiB reply came as ${parts.length} continuation frames`);
  for (const p of parts) tt.ok(Buffer.byteLength(JSON.stringify(p)) <= MAX_OUTBOUND_FRAME_BYTES, `part ${p.part} fits in 1 MiB`);
  tt.same(parts.map((p) => p.part), [...parts.keys()], 'parts are numbered in order');
  c.close();
  tt.equal(await h.exited, 0);
  tt.equal(h.strayBytes, 0);
});

t.test('100 requests in flight on one port are all answered and matched by request_id', async (tt) => {
  const h = host();
  const c = client(h);
  const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => c.request(i % 10 === 0 ? 'system' : 'health', null, { requestId: `r${i}` })));
  tt.equal(replies.length, 100);
  tt.ok(replies.every((r, i) => (i % 10 === 0 ? r.name === 'tabagent-server' : r.status === 'ok')), 'each reply matches its request');
  await tt.rejects(c.request('nope'), { code: 'ROUTE_NOT_FOUND' }, 'the client rejects with the contract error code');
  c.close();
  tt.equal(await h.exited, 0);
});

/** Greedy decoding of this prompt never reaches an end token on the synthetic tiny model: the generation runs until max_tokens. */
const longChat = (max_tokens: number) => ({ model: path.basename(modelPath, '.gguf'), messages: [{ role: 'user', content: 'Write a long story' }], max_tokens, temperature: 0 });

t.test('a streamed chat, cancelled; health does not wait behind a generation', async (tt) => {
  const h = host();
  const c = client(h);
  const stream = c.stream('chat', longChat(2000));
  let ended = false;
  void stream.result.then(() => (ended = true));
  const deltas: string[] = [];
  for await (const chunk of stream) {
    deltas.push(chunk.delta);
    if (deltas.length === 1) {
      const health = await c.request('health');
      tt.equal(health.status, 'ok');
      tt.notOk(ended, 'health was answered while the generation was still streaming');
    }
    if (deltas.length === 5) await stream.cancel();
  }
  const final = await stream.result;
  tt.equal(final.finish_reason, 'cancelled', 'the cancelled stream ends with finish_reason cancelled');
  tt.ok(final.usage.completion_tokens < 2000, `it stopped early (${final.usage.completion_tokens} of 2000 tokens)`);
  tt.equal(final.message.content, deltas.join(''), 'the final reply holds the streamed text');
  const stopped = await c.request('stop_generation', { request_id: stream.requestId });
  tt.same(stopped, { request_id: stream.requestId, stopped: false }, 'nothing is left running');
  c.close();
  tt.equal(await h.exited, 0);
  tt.equal(h.strayBytes, 0);
});

t.test('SIGTERM: the host lets the generation in flight finish, then exits 0', async (tt) => {
  const h = host();
  const c = client(h);
  const stream = c.stream('chat', longChat(300));
  const deltas: string[] = [];
  for await (const chunk of stream) {
    deltas.push(chunk.delta);
    if (deltas.length === 1) h.child.kill('SIGTERM');
  }
  const final = await stream.result;
  tt.equal(final.finish_reason, 'length', 'the generation ran to its end');
  tt.equal(final.usage.completion_tokens, 300);
  tt.equal(final.message.content, deltas.join(''), 'every chunk arrived');
  tt.equal(await h.exited, 0, 'exit code 0');
  tt.equal(h.strayBytes, 0, 'no stray byte on stdout');
});

t.test('an origin not allowed gets AUTH_ERROR and the host exits', async (tt) => {
  const h = host(['chrome-extension://abcdefghijklmnopabcdefghijklmnop/']);
  h.send({ request_id: 'x', route: 'health' });
  tt.equal(await h.exited, 1, 'the host exits with 1');
  tt.equal(h.frames.length, 1);
  tt.equal(h.frames[0].error.code, 'AUTH_ERROR');
  tt.match(h.frames[0].error.message, /abcdefghijklmnopabcdefghijklmnop/);
  tt.equal(h.strayBytes, 0);

  const firefox = host(['/path/to/com.tabagent.host.json', 'evil@example.org']);
  tt.equal(await firefox.exited, 1);
  tt.equal(firefox.frames[0].error.code, 'AUTH_ERROR', 'a Firefox caller is checked too');
});

t.test('allowed origins: installed ids and configured extension_ids', async (tt) => {
  const id = 'bcdefghijklmnopabcdefghijklmnopa';
  const baked = host(['--allow-extension', id, `chrome-extension://${id}/`]);
  baked.send({ request_id: 'ok', route: 'health' });
  tt.equal((await baked.reply('ok')).success, true, 'an id the host was installed for is allowed');
  await finish(tt, baked);

  const configured = host(['/path/to/com.tabagent.host.json', 'tabagent@example.org'], { TABAGENT_EXTENSION_IDS: 'tabagent@example.org' });
  configured.send({ request_id: 'ok', route: 'health' });
  tt.equal((await configured.reply('ok')).success, true, 'an id from the config (Firefox form) is allowed');
  await finish(tt, configured);
});

t.test('hosts with no server running start one between them, and report a server that cannot start', async (tt) => {
  // A slow start on a loaded machine is not what this tests: the relays may wait up to 2 minutes.
  const cold = [0, 1, 2].map(() => new RawHost(['--data-dir', coldDir], { TABAGENT_NATIVE__SERVER_START_TIMEOUT_MS: '120000' }));
  hosts.push(...cold);
  for (const h of cold) h.send({ request_id: 'cold', route: 'system' });
  const pids = await Promise.all(cold.map(async (h) => (await h.reply('cold', 120_000)).data.pid as number));
  tt.equal(new Set(pids).size, 1, 'three hosts spawned at once relayed to one server they started');
  tt.notOk(cold.some((h) => h.child.pid === pids[0]), 'the server is a process of its own');
  for (const h of cold) await finish(tt, h);
  tt.ok(existsSync(path.join(coldDir, 'tabagent-server.log')), 'the detached server logs into the data dir');

  const again = new RawHost(['--data-dir', coldDir]);
  hosts.push(again);
  again.send({ request_id: 'warm', route: 'system' });
  const sys = await again.reply('warm');
  tt.equal(sys.data.pid, pids[0], 'the server outlived the hosts that started it, and the next host reuses it');
  tt.equal(sys.data.mode, 'native');
  await finish(tt, again);
  tt.equal(await stopServerIn(coldDir), pids[0], 'the detached server stops on SIGTERM');

  const blocker = path.join(tmp.dir, 'not-a-dir');
  writeFileSync(blocker, 'x');
  const broken = new RawHost(['--data-dir', path.join(blocker, 'data')]);
  hosts.push(broken);
  tt.equal(await broken.exited, 1);
  tt.equal(broken.frames[0]?.error.code, 'UNAVAILABLE', 'a clear error frame when the server cannot start');
  tt.match(broken.frames[0]?.error.message, /could not start the TabAgent server|cannot|ENOTDIR/);
});

t.test('a server started by a browser directly serves stdin/stdout, keeps llama.cpp messages off it, and exits 0 on EOF', async (tt) => {
  const h = new RawHost(['serve', '--mode', 'native', '--data-dir', path.join(tmp.dir, 'direct'), '--model', modelPath], {}, [cliPath]);
  hosts.push(h);
  h.send({ request_id: 'd1', route: 'health' });
  // The server loads the model before it reads stdin: slow on a loaded machine.
  tt.equal((await h.reply('d1', 120_000)).success, true);
  h.send({ request_id: 'd2', route: 'stop_generation', payload: { request_id: 'nothing' } });
  tt.same((await h.reply('d2')).data, { request_id: 'nothing', stopped: false });
  // llama.cpp reports "failed to parse grammar" when a JSON schema is more than its grammar parser takes.
  const schema = { type: 'array', items: { type: 'integer' }, minItems: 2000 };
  h.send({ request_id: 'g', route: 'chat', payload: { ...longChat(4), response_format: { type: 'json_schema', json_schema: { schema } } } });
  tt.equal((await h.reply('g')).error?.code, 'VALIDATION_ERROR', 'the schema is refused with a clear error');
  h.send({ request_id: 'after', route: 'chat', payload: longChat(4) });
  tt.equal((await h.reply('after')).data?.usage.completion_tokens, 4, 'the stream is still whole and usable');
  await finish(tt, h);
  tt.match(h.stderr, /failed to parse grammar/, "llama.cpp's message went to the log on stderr, not into the frames");
});

t.test('a server started by a browser directly exits 0 on SIGTERM', async (tt) => {
  const h = new RawHost(['serve', '--mode', 'native', '--data-dir', path.join(tmp.dir, 'direct-term')], {}, [cliPath]);
  hosts.push(h);
  h.send({ request_id: 'k1', route: 'health' });
  tt.equal((await h.reply('k1', 120_000)).success, true);
  h.child.kill('SIGTERM');
  tt.equal(await h.exited, 0, 'SIGTERM: exit 0');
  tt.equal(h.strayBytes, 0, 'no stray byte on stdout');
});

t.test('the server ends with SIGTERM: exit 0, and it never wrote to stdout', async (tt) => {
  tt.equal(await server.stop(), 0);
});
