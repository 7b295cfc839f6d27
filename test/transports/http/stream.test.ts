/** Streaming under real use: a client that disconnects cancels its generation; a slow SSE reader costs bounded memory, and one that stops reading is cut. */
import { spawn } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import { raw } from './client.js';
import { LONG_OUTPUT, startStandInServer, startTestServer, type TestServer } from './fixture.js';
import { until } from '../../helpers/wait.js';

async function httpStats(server: TestServer): Promise<Record<string, any>> {
  return (await raw(server.url, 'GET', '/v1/http/stats')).json().listeners.find((l: { name: string }) => l.name === 'http');
}

function chatRequest(model: string, maxTokens: number, requestId: string, extra: Record<string, unknown> = {}): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'go' }], max_tokens: maxTokens, stream: true, ...extra });
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Request-Id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

async function modelStats(server: TestServer): Promise<{ completed: number; cancelled: number; completion_tokens: number }> {
  const stats = (await raw(server.url, 'GET', '/v1/stats')).json();
  return stats.models[server.model] ?? { completed: 0, cancelled: 0, completion_tokens: 0 };
}

t.test('a client that disconnects mid-stream cancels its generation', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.stop());
  const maxTokens = 100_000;
  const before = await modelStats(server);
  const beforeHttp = await httpStats(server);
  const sock = net.connect(server.port, '127.0.0.1');
  sock.write(chatRequest(server.model, maxTokens, 'gone-1', { response_format: LONG_OUTPUT }));
  await new Promise<void>((resolve) => {
    let seen = '';
    sock.on('data', (d) => {
      seen += d.toString();
      if (/data: .*"content":"[^"]/.test(seen)) resolve();
    });
  });
  sock.destroy();
  const after = await until('the generation to end', async () => {
    const s = await modelStats(server);
    return s.cancelled + s.completed > before.cancelled + before.completed ? s : undefined;
  });
  t.equal(after.cancelled, before.cancelled + 1, 'the generation ended as cancelled, not run to its end');
  const produced = after.completion_tokens - before.completion_tokens;
  t.ok(produced > 0 && produced < maxTokens, `it stopped early (${produced} of ${maxTokens} tokens)`);
  const http = await httpStats(server);
  t.equal(http.cancelled_by_disconnect, beforeHttp.cancelled_by_disconnect + 1, 'the listener counted the disconnect');
  t.equal(http.streams_open, 0, 'no stream is left open');
  const stop = (await raw(server.url, 'POST', '/v1/generation/stop', { body: JSON.stringify({ request_id: 'gone-1' }) })).json();
  t.same(stop, { request_id: 'gone-1', stopped: false }, 'the disconnected request is no longer running');
});

/** A reader with a 2 KiB receive window that reads nothing for a while, then everything; prints what it got as JSON. */
function slowReader(port: number, request: string, stallS: number, readAfter: boolean): Promise<{ bytes: number; text: string; done: boolean; finish: string | null }> {
  const py = `
import socket, time, json, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048); s.connect(('127.0.0.1', ${port}))
s.sendall(sys.stdin.buffer.read())
time.sleep(${stallS})
buf = b''
if ${readAfter ? 'True' : 'False'}:
    s.settimeout(30)
    while b'data: [DONE]' not in buf:
        try:
            d = s.recv(65536)
        except Exception:
            break
        if not d: break
        buf += d
text = ''; finish = None
for line in buf.split(b'\\n'):
    if line.startswith(b'data: {'):
        ev = json.loads(line[6:])
        for c in ev.get('choices', []):
            text += c.get('delta', {}).get('content') or ''
            finish = c.get('finish_reason') or finish
print(json.dumps({'bytes': len(buf), 'text': text, 'done': b'data: [DONE]' in buf, 'finish': finish}))
`;
  return new Promise((resolve, reject) => {
    const p = spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`reader exited ${code}`))));
    p.stdin.end(request);
  });
}

t.test('slow SSE readers: bounded memory, and cut when too far behind', async (t) => {
  // Transport-level: needs a stream bigger than the kernel's socket buffers (~2 MB here), more than a real model's context yields.
  const bound = 256 * 1024;
  const server = await startStandInServer({ 'http.stream_max_pending_bytes': bound });
  t.teardown(() => server.stop());

  const tokens = 30_000;
  const slow = await slowReader(server.port, chatRequest(server.model, tokens, 'slow-1'), 2, true);
  const expected = Array.from({ length: tokens }, (_, i) => `t${i} `).join('');
  t.ok(slow.bytes > 8 * bound, `the stream (${slow.bytes} bytes) is much bigger than the bound`);
  t.ok(slow.done, 'the slow reader got the whole stream');
  t.equal(slow.text, expected, 'no text was lost while deltas were merged');
  t.equal(slow.finish, 'length');
  let s = await httpStats(server);
  t.ok(s.stream_backpressure_events >= 1, `backpressure was hit (${s.stream_backpressure_events} times)`);
  t.ok(s.stream_pending_bytes_max <= bound, `held back at most ${s.stream_pending_bytes_max} bytes (bound ${bound})`);
  t.ok(s.stream_pending_bytes_max < slow.bytes / 10, 'what is held is the text, not one event per token');
  t.equal(s.stream_pending_bytes, 0);

  const stalled = await slowReader(server.port, chatRequest(server.model, 200_000, 'stalled-1'), 4, false);
  t.equal(stalled.done, false);
  s = await until('the stalled stream to be cut', async () => {
    const st = await httpStats(server);
    return st.streams_cut_slow_reader >= 1 && st.streams_open === 0 ? st : undefined;
  });
  t.equal(s.streams_cut_slow_reader, 1, 'a reader that stops reading is cut, not buffered for');
  t.ok(s.stream_pending_bytes_max <= bound + 16, 'the bound held');
  t.equal(s.stream_pending_bytes, 0, 'its held data was released');
});

/**
 * A WebSocket client (with a small receive window when `rcvbuf` is given) that sends one request and reads nothing until `read()`
 * (or, after `quit()`, never). The result: the streamed text, the final frame and the close code.
 */
function stalledWsReader(port: number, request: string, rcvbuf = 0): { read(): void; quit(): void; result: Promise<{ text: string; frames: number; final: any; close: number | null }> } {
  const py = `
import socket, json, sys, os, struct, base64
s = socket.socket()
if ${rcvbuf}: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ${rcvbuf})
s.connect(('127.0.0.1', ${port}))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(('GET /v1/ws HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: %s\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n' % key).encode())
buf = b''
while b'\\r\\n\\r\\n' not in buf: buf += s.recv(1)
buf = buf[buf.index(b'\\r\\n\\r\\n') + 4:]
body = os.environ['REQUEST'].encode(); mask = os.urandom(4)
head = bytes([0x81]) + (bytes([0x80 | len(body)]) if len(body) < 126 else bytes([0x80 | 126]) + struct.pack('>H', len(body)))
s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
text = []; frames = 0; final = None; close = None; pos = 0
def need(n):
    global buf, pos
    if len(buf) - pos >= n: return
    buf = buf[pos:]; pos = 0
    while len(buf) < n:
        d = s.recv(1 << 20)
        if not d: raise EOFError
        buf += d
if sys.stdin.readline().strip() == 'read':
    s.settimeout(30)
    try:
        while final is None and close is None:
            need(2); op = buf[pos] & 15; n = buf[pos + 1] & 127; off = 2
            if n == 126: need(4); n = struct.unpack('>H', buf[pos + 2:pos + 4])[0]; off = 4
            elif n == 127: need(10); n = struct.unpack('>Q', buf[pos + 2:pos + 10])[0]; off = 10
            need(off + n); payload = buf[pos + off:pos + off + n]; pos += off + n
            if op == 8: close = struct.unpack('>H', payload[:2])[0] if len(payload) >= 2 else 1005
            elif op == 1:
                f = json.loads(payload)
                if f.get('event') == 'chunk': text.append(f['data']['delta']); frames += 1
                else: final = f
    except Exception:
        pass
text = ''.join(text)
print(json.dumps({'text': text, 'frames': frames, 'final': final, 'close': close}))
`;
  const p = spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, REQUEST: request } });
  const result = new Promise<{ text: string; frames: number; final: any; close: number | null }>((resolve, reject) => {
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`reader exited ${code}`))));
  });
  return { read: () => p.stdin.end('read\n'), quit: () => p.stdin.end('quit\n'), result };
}

t.test('WebSocket backpressure: a slow reader gets every token, a stalled one is closed', async (t) => {
  const bound = 1024 * 1024;
  const server = await startStandInServer({ 'http.ws_max_backpressure_bytes': bound });
  t.teardown(() => server.stop());
  const chat = (id: string, maxTokens: number, pad = ''): string => {
    const messages = [{ role: 'user', content: 'go' }];
    if (pad) messages.unshift({ role: 'system', content: pad });
    return JSON.stringify({ request_id: id, route: 'chat', payload: { model: server.model, messages, max_tokens: maxTokens, stream: true } });
  };

  // The reader starts reading once the server holds frames back. Its whole text (~0.75 MB) stays under the
  // bound while its frames (~6 MB) overflow the kernel's buffers (small receive window): merging must keep
  // it alive however slowly it reads, so the test does not depend on the machine's load.
  const tokens = 100_000;
  const slow = stalledWsReader(server.port, chat('ws-slow', tokens), 4096);
  let s = await until('the server to hold frames back', async () => {
    const st = await httpStats(server);
    return st.ws_backpressure_events >= 1 ? st : undefined;
  });
  slow.read();
  const got = await slow.result;
  t.equal(got.final?.success, true, 'the slow reader got its final reply');
  t.equal(got.final?.data.finish_reason, 'length', 'it was not cut');
  const expected = Array.from({ length: tokens }, (_, i) => `t${i} `).join('');
  t.ok(expected.length < bound, 'the text fits the bound (what the test relies on)');
  t.equal(got.text, expected, 'merged chunks lost no text');
  t.ok(got.frames < tokens, `chunks held back were merged (${got.frames} frames for ${tokens} tokens)`);
  s = await httpStats(server);
  t.equal(s.ws_closed_slow_reader, 0);
  t.ok(s.ws_buffered_bytes_max <= 2 * bound + 4096, `uWS never held more than the bound allows (${s.ws_buffered_bytes_max} bytes)`);

  // 1 KiB tokens: the kernel's socket buffers (several MB on loopback) fill after a few thousand.
  const stalled = stalledWsReader(server.port, chat('ws-stalled', 1_000_000, 'x'.repeat(1024)), 2048);
  s = await until('the stalled socket to be closed and its generation cancelled', async () => {
    const st = await httpStats(server);
    return st.ws_closed_slow_reader >= 1 && st.ws_connections_open === 0 ? st : undefined;
  });
  stalled.quit();
  t.equal((await stalled.result).final, null);
  t.equal(s.ws_closed_slow_reader, 1, 'a socket that stops reading is closed, not buffered for');
  const stop = (await raw(server.url, 'POST', '/v1/generation/stop', { body: JSON.stringify({ request_id: 'ws-stalled' }) })).json();
  t.same(stop, { request_id: 'ws-stalled', stopped: false }, 'its generation is no longer running');
});
