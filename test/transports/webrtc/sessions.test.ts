import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { startHarness, wrtc } from './helpers.js';
import { settle } from '../../helpers/wait.js';

async function call(h: Awaited<ReturnType<typeof startHarness>>, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const init: { method: string; headers: Record<string, string>; body?: string } = { method, headers: {} };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await h.fetch(h.baseUrl + path, init);
  return { status: r.status, body: await r.json() };
}

async function offerSdp(): Promise<{ pc: any; sdp: string }> {
  const pc = new wrtc.RTCPeerConnection();
  pc.createDataChannel('tabagent');
  await pc.setLocalDescription(await pc.createOffer());
  return { pc, sdp: pc.localDescription.sdp };
}

t.test('bad signalling input gets clear errors and disturbs nothing', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const base = { baseUrl: h.baseUrl, fetch: h.fetch, RTCPeerConnection: wrtc.RTCPeerConnection };
  const live = await TabAgentRtcClient.connect(base);

  let r = await call(h, 'POST', '/v1/webrtc/offer', { sdp: 'this is not sdp', type: 'offer' });
  t.equal(r.status, 400);
  t.match(r.body.detail, /data channel|SDP/);
  r = await call(h, 'POST', '/v1/webrtc/offer', { sdp: 'v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\ngarbage\r\n', type: 'offer' });
  t.equal(r.status, 400, 'malformed SDP');
  t.match(r.body.detail, /malformed offer SDP/);
  r = await call(h, 'POST', '/v1/webrtc/offer', { sdp: 'v=0', type: 'answer' });
  t.equal(r.status, 400, 'wrong type');
  t.equal(r.body.code, 'VALIDATION_ERROR');
  t.equal(h.transport.sessions.size, 1, 'failed offers leave no session behind');

  r = await call(h, 'GET', '/v1/webrtc/session/no-such-session');
  t.equal(r.status, 404);
  t.match(r.body.detail, /no webrtc session no-such-session/);
  r = await call(h, 'POST', '/v1/webrtc/ice', { session_id: 'nope', candidate: null });
  t.equal(r.status, 404);
  r = await call(h, 'DELETE', '/v1/webrtc/session/nope');
  t.equal(r.status, 404);
  r = await call(h, 'GET', '/v1/webrtc/session/bad id!/candidates');
  t.equal(r.status, 400, 'session id validated');

  r = await call(h, 'POST', '/v1/webrtc/answer', { session_id: live.sessionId, sdp: 'v=0', type: 'answer' });
  t.equal(r.status, 409, 'answer to a client-offer session');
  t.match(r.body.detail, /already has the server's answer/);

  const so = await call(h, 'POST', '/v1/webrtc/offer', {});
  t.equal(so.body.type, 'offer');
  r = await call(h, 'POST', '/v1/webrtc/answer', { session_id: so.body.session_id, sdp: 'v=0\r\ngarbage', type: 'answer' });
  t.equal(r.status, 400, 'malformed answer');
  r = await call(h, 'POST', '/v1/webrtc/ice', { session_id: live.sessionId, candidate: { candidate: 'candidate:garbage', sdpMid: '0', sdpMLineIndex: 0 } });
  t.equal(r.status, 400, 'bad candidate');
  t.match(r.body.detail, /invalid ICE candidate/);
  r = await call(h, 'GET', `/v1/webrtc/session/${so.body.session_id}/candidates?since=abc`);
  t.equal(r.status, 400);
  r = await call(h, 'GET', `/v1/webrtc/session/${so.body.session_id}/candidates?since=0`);
  t.equal(r.status, 200);
  t.equal(r.body.complete, true);
  t.ok(r.body.candidates.length > 0, 'server candidates listed');
  r = await call(h, 'DELETE', `/v1/webrtc/session/${so.body.session_id}`);
  t.same(r.body, { session_id: so.body.session_id, state: 'closed', closed: true });
  r = await call(h, 'DELETE', `/v1/webrtc/session/${so.body.session_id}`);
  t.equal(r.body.closed, false, 'closing twice is harmless');
  r = await call(h, 'POST', '/v1/webrtc/answer', { session_id: so.body.session_id, sdp: 'v=0', type: 'answer' });
  t.equal(r.status, 409, 'answer to a closed session');

  t.equal((await live.request<{ status: string }>('health')).status, 'ok', 'the live session was not disturbed');
  await live.close();
});

t.test('bad messages on the channel get error frames; the channel keeps serving', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  // Drive the channel by hand to send what the client helper never would.
  const peer = new wrtc.RTCPeerConnection();
  const ch = peer.createDataChannel('tabagent');
  ch.binaryType = 'arraybuffer';
  await peer.setLocalDescription(await peer.createOffer());
  await new Promise((r) => setTimeout(r, 200));
  const reply = await call(h, 'POST', '/v1/webrtc/offer', { sdp: peer.localDescription.sdp, type: 'offer' });
  await peer.setRemoteDescription({ type: 'answer', sdp: reply.body.sdp });
  if (ch.readyState !== 'open') await new Promise((r) => (ch.onopen = r));
  const frames: any[] = [];
  ch.onmessage = (ev: { data: string | ArrayBuffer }) => frames.push(typeof ev.data === 'string' ? JSON.parse(ev.data) : { binary: new Uint8Array(ev.data) });
  const next = async (n: number): Promise<void> => {
    await settle(() => frames.length, (len) => len >= n);
  };
  ch.send('{not json');
  await next(1);
  t.match(frames[0], { request_id: null, success: false, error: { code: 'JSON_ERROR' } });
  ch.send(JSON.stringify({ route: 'health' }));
  await next(2);
  t.match(frames[1], { success: false, error: { code: 'PROTOCOL_ERROR', message: /request_id/ } });
  ch.send(JSON.stringify({ request_id: 'u1', route: 'no_such_route' }));
  await next(3);
  t.match(frames[2], { request_id: 'u1', success: false, error: { code: 'ROUTE_NOT_FOUND' } });
  ch.send(new Uint8Array([0xc1, 0x01]));
  await next(4);
  t.ok(frames[3].binary, 'an undecodable binary message is answered in binary');
  ch.send(new Uint8Array([0xc1, 0x00, 0, 0, 0, 7, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
  await next(5);
  t.ok(frames[4].binary, 'oversize fragmented message refused (binary error frame)');
  ch.send(JSON.stringify({ request_id: 'ok1', route: 'health' }));
  await next(6);
  t.match(frames[5], { request_id: 'ok1', success: true, data: { status: 'ok' } });
  ch.close();
  peer.close();
});

t.test('session limits: total, per client id, per remote address', async (t) => {
  const h = await startHarness({ max_sessions: 3, max_sessions_per_client: 1, max_sessions_per_address: 2 });
  t.teardown(() => h.stop());
  const pcs: any[] = [];
  t.teardown(() => pcs.forEach((p) => p.close()));
  const offer = async (body: Record<string, unknown>, viaBus = false) => {
    const { pc, sdp } = await offerSdp();
    pcs.push(pc);
    if (viaBus) return h.ctx.gateway('test').call('webrtc_offer', { sdp, type: 'offer', trickle: true, ...body }, `o${pcs.length}`).then((b) => ({ status: 200, body: b }), (e) => ({ status: 0, body: e }));
    return call(h, 'POST', '/v1/webrtc/offer', { sdp, type: 'offer', trickle: true, ...body });
  };
  t.equal((await offer({ peer_id: 'p1' })).status, 200);
  let r = await offer({ peer_id: 'p1' });
  t.equal(r.status, 429, 'second session of one peer id');
  t.match(r.body.detail, /peer 'p1' already has 1/);
  t.equal((await offer({ peer_id: 'p2' })).status, 200);
  r = await offer({ peer_id: 'p3' });
  t.equal(r.status, 429, 'third from one address');
  t.match(r.body.detail, /address 127.0.0.1 already has 2/);
  t.equal((await offer({ peer_id: 'p3' }, true)).status, 200, 'another address is fine');
  r = await offer({ peer_id: 'p4' }, true);
  t.equal(r.body.code, 'BUSY', 'total limit');
  t.equal(h.transport.sessions.size, 3);
});

t.test('idle and handshake timeouts close sessions', async (t) => {
  const h = await startHarness({ idle_timeout_ms: 300, handshake_timeout_ms: 300 });
  t.teardown(() => h.stop());
  const c = await TabAgentRtcClient.connect({ baseUrl: h.baseUrl, fetch: h.fetch, RTCPeerConnection: wrtc.RTCPeerConnection });
  const closed = new Promise<string>((r) => (c.onclose = r));
  const { pc, sdp } = await offerSdp();
  t.teardown(() => pc.close());
  const stalled = await call(h, 'POST', '/v1/webrtc/offer', { sdp, type: 'offer', trickle: true });
  t.match(await closed, /closed/, 'idle session closed and the client told');
  await new Promise((r) => setTimeout(r, 200));
  const info = await call(h, 'GET', `/v1/webrtc/session/${c.sessionId}`);
  t.match(info.body.close_reason, /idle for more than 300 ms/);
  const st = await call(h, 'GET', `/v1/webrtc/session/${stalled.body.session_id}`);
  t.match(st.body.close_reason, /not connected within 300 ms/);
  t.equal(h.transport.sessions.size, 0);
});

/** Threads and open descriptors of this process: what a peer connection holds natively (Linux). */
function native(): { threads: number; fds: number } {
  return { threads: Number(/Threads:\s*(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]), fds: readdirSync('/proc/self/fd').length };
}

t.test('200 connect/request/close cycles leak no sessions, handles, threads, descriptors or memory', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const handles = (): number => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
  const base = { baseUrl: h.baseUrl, fetch: h.fetch, RTCPeerConnection: wrtc.RTCPeerConnection };
  const warm = await TabAgentRtcClient.connect(base);
  await warm.close();
  await new Promise((r) => setTimeout(r, 1500));
  const before = { handles: handles(), ...native() };
  let rssAtHalf = 0;
  for (let i = 1; i <= 200; i++) {
    const c = await TabAgentRtcClient.connect({ ...base, trickle: i % 2 === 0 });
    await c.request('health');
    await c.close();
    if (i === 100) rssAtHalf = process.memoryUsage.rss();
  }
  const rssGrowthMb = (process.memoryUsage.rss() - rssAtHalf) / 1e6;
  t.equal(h.transport.sessions.size, 0, 'no live session left');
  // Each closed peer connection holds 2 threads and 4 descriptors until collected; the server collects
  // 1 s after closes and again 5 s after the last (without that, this loop would leave ~800 threads and ~1600 descriptors).
  const after = await settle(native, (n) => n.threads <= before.threads + 16, 30_000, 100);
  t.ok(after.threads <= before.threads + 16, `threads back near baseline (${before.threads} -> ${after.threads})`);
  t.ok(after.fds <= before.fds + 32, `descriptors back near baseline (${before.fds} -> ${after.fds})`);
  t.ok(handles() <= before.handles, `handles back to baseline (${before.handles} -> ${handles()})`);
  t.ok(rssGrowthMb < 50, `RSS levels off: ${rssGrowthMb.toFixed(1)} MB over the second 100 cycles`);
});
