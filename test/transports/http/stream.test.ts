/** Streaming under real use: a client that disconnects cancels its generation; a slow SSE reader costs bounded memory, and one that stops reading is cut. */
import { spawn } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import { raw } from './client.js';
import { startStandInServer, startTestServer, type TestServer } from './fixture.js';

async function httpStats(server: TestServer): Promise<Record<string, any>> {
  return (await raw(server.url, 'GET', '/v1/http/stats')).json().listeners.find((l: { name: string }) => l.name === 'http');
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function chatRequest(model: string, maxTokens: number, requestId: string): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'go' }], max_tokens: maxTokens, stream: true });
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Request-Id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

t.test('a client that disconnects mid-stream cancels its generation', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.stop());
  const before = await httpStats(server);
  const sock = net.connect(server.port, '127.0.0.1');
  sock.write(chatRequest(server.model, 1500, 'gone-1'));
  await new Promise<void>((resolve) => {
    let seen = '';
    sock.on('data', (d) => {
      seen += d.toString();
      if (/data: .*"content":"[^"]/.test(seen)) resolve();
    });
  });
  sock.destroy();
  const after = await until('the disconnect to be counted', async () => {
    const s = await httpStats(server);
    return s.cancelled_by_disconnect > before.cancelled_by_disconnect ? s : undefined;
  });
  t.equal(after.cancelled_by_disconnect, before.cancelled_by_disconnect + 1);
  t.equal(after.streams_open, 0, 'no stream is left open');
  // Once the generation has ended it is no longer in flight: stop_generation finds nothing to stop.
  const stop = await until('the generation to end', async () => {
    await new Promise((r) => setTimeout(r, 200));
    return (await raw(server.url, 'POST', '/v1/generation/stop', { body: JSON.stringify({ request_id: 'gone-1' }) })).json();
  });
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
