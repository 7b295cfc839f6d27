/** The WebSocket carrier at /v1/ws: many streams on one socket with a cancel, msgpack frames, bad frames, and the Origin rule on upgrade. */
import { pack, unpack } from 'msgpackr';
import t from 'tap';
import WebSocket from 'ws';
import { LONG_OUTPUT, startTestServer } from './fixture.js';
import { settle } from '../../helpers/wait.js';

const maxPayload = 64 * 1024;
const server = await startTestServer({ flags: { 'http.cors_origins': ['http://app.example'], 'http.ws_max_payload_bytes': maxPayload } });
t.teardown(() => server.stop());

function open(headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(server.wsUrl, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
  });
}

t.test('10 concurrent streams on one socket, one cancelled', async (t) => {
  const ws = await open();
  const frames = new Map<string, any[]>();
  const done = new Map<string, any>();
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const ids = Array.from({ length: 10 }, (_, i) => `s${i}`);
  const victim = 's3';
  let cancelSent = false;
  ws.on('message', (data: Buffer, binary: boolean) => {
    t.notOk(binary, 'JSON requests get text frames');
    const f = JSON.parse(data.toString());
    if (f.event === 'chunk') {
      (frames.get(f.request_id) ?? frames.set(f.request_id, []).get(f.request_id)!).push(f.data);
      if (f.request_id === victim && !cancelSent) {
        cancelSent = true;
        ws.send(JSON.stringify({ request_id: 'cancel-1', route: 'stop_generation', payload: { request_id: victim } }));
      }
      return;
    }
    done.set(f.request_id, f);
    if (ids.every((id) => done.has(id)) && done.has('cancel-1')) resolveAll();
  });
  for (const id of ids) {
    const payload: Record<string, unknown> = { model: server.model, messages: [{ role: 'user', content: `hi ${id}` }], max_tokens: 12, stream: true };
    if (id === victim) Object.assign(payload, { max_tokens: 100_000, response_format: LONG_OUTPUT });
    ws.send(JSON.stringify({ request_id: id, route: 'chat', payload }));
  }
  await all;
  for (const id of ids) {
    const f = done.get(id);
    t.equal(f.success, true, `${id} succeeded`);
    const chunks = frames.get(id) ?? [];
    const streamed = chunks.map((c) => c.delta).join('');
    t.equal(streamed, f.data.message.content, `${id}: the chunks add up to the final text`);
    if (id === victim) t.equal(f.data.finish_reason, 'cancelled', 'the cancelled stream ends with finish_reason cancelled');
    else t.ok(['stop', 'length'].includes(f.data.finish_reason), `${id} ran to its end`);
  }
  t.same(done.get('cancel-1').data, { request_id: victim, stopped: true });
  ws.close();
});

t.test('msgpack binary frames get msgpack replies', async (t) => {
  const ws = await open();
  const reply = await new Promise<{ data: Buffer; binary: boolean }>((resolve) => {
    ws.once('message', (data: Buffer, binary: boolean) => resolve({ data, binary }));
    ws.send(pack({ request_id: 'mp-1', route: 'health' }));
  });
  t.ok(reply.binary);
  const f = unpack(reply.data);
  t.equal(f.request_id, 'mp-1');
  t.equal(f.success, true);
  t.equal(f.data.status, 'ok');
  ws.close();
});

t.test('bad frames get error frames and the socket keeps working', async (t) => {
  const ws = await open();
  const next = (): Promise<any> => new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()))));
  let p = next();
  ws.send('{"request_id": "x", route: }');
  const bad = await p;
  t.equal(bad.success, false);
  t.equal(bad.error.code, 'JSON_ERROR');
  t.match(bad.error.message, /position 20 \(line 1, column 21\)/);
  p = next();
  ws.send(JSON.stringify({ request_id: 'v1', route: 'stop_generation', payload: {} }));
  const invalid = await p;
  t.equal(invalid.request_id, 'v1');
  t.equal(invalid.error.code, 'VALIDATION_ERROR');
  p = next();
  ws.send(JSON.stringify({ request_id: 'h1', route: 'health' }));
  t.equal((await p).success, true);
  ws.close();
});

t.test('a message over http.ws_max_payload_bytes gets an error frame naming the limit; the socket goes on', async (t) => {
  const ws = await open();
  const frames: any[] = [];
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString())));
  const until = async (n: number) => settle(() => frames.length, (len) => len >= n);
  ws.send(JSON.stringify({ request_id: 'big-1', route: 'health', payload: { pad: 'x'.repeat(maxPayload + 1) } }));
  await until(1);
  t.equal(frames[0]?.success, false);
  t.equal(frames[0]?.error.code, 'PAYLOAD_TOO_LARGE');
  t.match(frames[0]?.error.message, new RegExp(`larger than the limit of ${maxPayload} bytes \\(http.ws_max_payload_bytes\\)`));
  ws.send(JSON.stringify({ request_id: 'after-big', route: 'health' }));
  await until(2);
  t.same([frames[1]?.request_id, frames[1]?.success], ['after-big', true], 'the same socket serves the next request');
  ws.close();
});

t.test('a message past twice the limit ends that socket only (uWS drops it unread)', async (t) => {
  const ws = await open();
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send(JSON.stringify({ request_id: 'huge-1', route: 'health', payload: { pad: 'x'.repeat(2 * maxPayload + 1) } }));
  t.ok([1006, 1009].includes(await closed), 'the connection ends');
  const next = await open();
  const reply = await new Promise<any>((resolve) => {
    next.once('message', (d: Buffer) => resolve(JSON.parse(d.toString())));
    next.send(JSON.stringify({ request_id: 'after-huge', route: 'health' }));
  });
  t.equal(reply.success, true, 'the server keeps serving other sockets');
  next.close();
});

t.test('the Origin and Host rules apply to the upgrade', async (t) => {
  const err = await open({ Origin: 'https://evil.example' }).catch((e: { status?: number }) => e);
  t.equal((err as { status?: number }).status, 403, 'a foreign origin cannot open a socket');
  const hostErr = await open({ Host: 'rebind.example' }).catch((e: { status?: number }) => e);
  t.equal((hostErr as { status?: number }).status, 403, 'a foreign Host cannot open a socket');
  const ok = await open({ Origin: 'http://app.example' });
  ok.close();
  t.pass('an allowed origin can');
});
