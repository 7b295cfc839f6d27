import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { startHarness, streamEnds, wrtc } from './helpers.js';
import { settle } from '../../helpers/wait.js';

const h = await startHarness({ max_message_bytes: 4 * 1024 * 1024 });
t.teardown(() => h.stop());
const base = { baseUrl: h.baseUrl, fetch: h.fetch, RTCPeerConnection: wrtc.RTCPeerConnection };

for (const flow of ['client_offer', 'server_offer'] as const) {
  for (const trickle of [false, true]) {
    t.test(`${flow} handshake (trickle ${trickle}), request and session state`, async (t) => {
      const c = await TabAgentRtcClient.connect({ ...base, flow, trickle, peerId: 'peer-a' });
      const health = await c.request<{ status: string }>('health');
      t.equal(health.status, 'ok');
      const info = (await h.fetch(`${h.baseUrl}/v1/webrtc/session/${c.sessionId}`, { method: 'GET', headers: {} }).then((r) => r.json())) as Record<string, any>;
      t.equal(info['state'], 'connected');
      t.equal(info['flow'], flow);
      t.equal(info['channel'].label, 'tabagent');
      t.equal(info['channel'].state, 'open');
      t.equal(info['peer_id'], 'peer-a');
      await c.close();
      const after = (await h.fetch(`${h.baseUrl}/v1/webrtc/session/${c.sessionId}`, { method: 'GET', headers: {} }).then((r) => r.json())) as Record<string, any>;
      t.equal(after['state'], 'closed');
      t.match(after['close_reason'], /webrtc_close/);
      t.equal(h.transport.sessions.size, 0);
    });
  }
}

t.test('streams chunk frames, many requests in flight, cancel', async (t) => {
  const c = await TabAgentRtcClient.connect(base);
  t.teardown(() => c.close());
  const chunks: unknown[] = [];
  const r = await c.request<{ count: number; finish_reason: string }>('test_stream', { count: 20 }, { onChunk: (d) => chunks.push(d) });
  t.equal(r.count, 20);
  t.equal(chunks.length, 20);
  t.same(chunks[3], { i: 3, delta: 'xxxx' });

  const many = await Promise.all(Array.from({ length: 50 }, (_, i) => c.request<{ echo: number }>('test_stream', { count: 2, echo: i })));
  t.same(many.map((m) => m.echo), Array.from({ length: 50 }, (_, i) => i));

  const ac = new AbortController();
  let seen = 0;
  const slow = c.request<{ count: number; finish_reason: string }>('test_stream', { count: 1000, delay_ms: 5 }, {
    signal: ac.signal,
    onChunk: () => {
      if (++seen === 3) ac.abort();
    },
  });
  const res = await slow;
  t.equal(res.finish_reason, 'cancelled');
  t.ok(res.count < 1000);
  t.equal((await c.request<{ status: string }>('health')).status, 'ok', 'channel still serves after a cancel');
});

t.test('large messages are split and reassembled both ways, JSON and msgpack', async (t) => {
  const big = 'y'.repeat(1_500_000) + 'é';
  for (const codec of [undefined, { encode: (v: unknown) => new Packr({ useRecords: false }).pack(v), decode: (b: Uint8Array) => new Packr({ useRecords: false }).unpack(b) }]) {
    const c = await TabAgentRtcClient.connect(codec ? { ...base, codec } : base);
    const r = await c.request<{ echo: string }>('test_stream', { count: 1, echo: big });
    t.equal(r.echo.length, big.length, `${codec ? 'msgpack' : 'json'}: 1.5 MB echoed`);
    t.equal(r.echo, big);
    const chunks: { delta: string }[] = [];
    await c.request('test_stream', { count: 3, size: 600_000 }, { onChunk: (d) => chunks.push(d as { delta: string }) });
    t.same(chunks.map((x) => x.delta.length), [600_000, 600_000, 600_000], 'big chunk frames reassembled');
    await c.close();
  }
});

t.test('a message over webrtc.max_message_bytes gets PAYLOAD_TOO_LARGE; the channel keeps serving', async (t) => {
  const c = await TabAgentRtcClient.connect(base);
  t.teardown(() => c.close());
  await t.rejects(c.request('test_stream', { echo: 'z'.repeat(5 * 1024 * 1024) }), { code: 'PAYLOAD_TOO_LARGE' });
  t.equal((await c.request<{ status: string }>('health')).status, 'ok');
});

t.test('a burst bigger than the channel send buffer arrives whole: writes wait on bufferedAmount', { timeout: 60_000 }, async (t) => {
  // libwebrtc silently drops messages sent past its 16 MiB send buffer (seen here: 48 MB sent at once
  // without waiting lost chunks); the writer's queue may hold 2 x max_message_bytes, so 32 MiB fits this burst.
  const roomy = await startHarness({ max_message_bytes: 32 * 1024 * 1024 });
  t.teardown(() => roomy.stop());
  const c = await TabAgentRtcClient.connect({ baseUrl: roomy.baseUrl, RTCPeerConnection: wrtc.RTCPeerConnection });
  t.teardown(() => c.close());
  const sizes: number[] = [];
  const r = await c.request<{ count: number }>('test_stream', { count: 80, size: 600_000 }, { onChunk: (d) => sizes.push((d as { delta: string }).delta.length) });
  t.equal(r.count, 80);
  t.equal(sizes.length, 80, 'every chunk of a 48 MB burst arrived');
  t.ok(sizes.every((n) => n === 600_000), 'each whole');
  t.equal(roomy.transport.sessions.info(c.sessionId).channel!.buffered_bytes, 0, 'all sent in the end');
  t.equal((await c.request<{ status: string }>('health')).status, 'ok', 'the channel still serves');
});

t.test('a session that ends cancels its requests: DELETE, or the peer vanishing', async (t) => {
  for (const how of ['delete', 'vanish'] as const) {
    const c = await TabAgentRtcClient.connect(base);
    let seen = 0;
    const started = new Promise<void>((resolve) => {
      void c.request('test_stream', { count: 100_000, delay_ms: 5, echo: how }, { onChunk: () => ++seen === 2 && resolve() }).catch(() => {});
    });
    await started;
    t.equal(h.transport.sessions.info(c.sessionId).requests_in_flight, 1);
    // 'vanish': the page's tab is gone; nothing tells the server but the connection itself.
    if (how === 'delete') await c.close();
    else (c as unknown as { pc: { close(): void } }).pc.close();
    await settle(() => streamEnds.has(how), Boolean);
    t.equal(streamEnds.get(how), 'cancelled', `${how}: the generation was stopped`);
    t.equal(h.transport.sessions.info(c.sessionId).state, 'closed');
    await c.close();
  }
});

t.test('a peer that stops reading has its session closed once 2 x max_message_bytes wait to be sent', async (t) => {
  // A real stalled reader: the client process is stopped (SIGSTOP), so its SCTP stack stops acknowledging.
  const child = spawn(process.execPath, ['--import=tsx', path.join(import.meta.dirname, 'stalled-peer.ts'), h.baseUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const sessionId = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (b: Buffer) => resolve(b.toString().trim()));
    child.once('exit', (code) => reject(new Error(`stalled peer exited with ${code}`)));
  });
  child.kill('SIGSTOP');
  const info = await settle(() => h.transport.sessions.info(sessionId), (i) => i.state === 'closed', 60_000);
  t.equal(info.state, 'closed');
  t.match(info.close_reason, /the peer is not reading: \d+ bytes waiting to be sent/);
  await settle(() => streamEnds.has('stalled'), Boolean);
  t.equal(streamEnds.get('stalled'), 'cancelled', 'its stream was stopped');
  const other = await TabAgentRtcClient.connect(base);
  t.equal((await other.request<{ status: string }>('health')).status, 'ok', 'other sessions are served');
  await other.close();
});
