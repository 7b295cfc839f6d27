import t from 'tap';
import dgram from 'node:dgram';
import http from 'node:http';
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { loadConfig } from '../../../src/runtime/config.js';
import { startHarness, wrtc } from './helpers.js';
import { until } from '../../helpers/wait.js';

type Reply = { status: number; headers: http.IncomingHttpHeaders; body: any };

/** One HTTP exchange with any headers (Host included, which fetch will not set). */
function request(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Reply> {
  const url = new URL(path, base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { ...(data ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}


const withoutCandidates = (sdp: string): string => sdp.replace(/^a=(candidate|end-of-candidates).*\r\n/gm, '');
const candidateLines = (sdp: string): string[] => sdp.split('\r\n').filter((l) => l.startsWith('a=candidate:'));

t.test('trickle ICE both ways: candidates travel only through webrtc_ice and webrtc_candidates', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const pc = new wrtc.RTCPeerConnection();
  t.teardown(() => pc.close());
  const local: any[] = [];
  let gathered = false;
  pc.onicecandidate = (ev: any) => (ev.candidate ? local.push(ev.candidate.toJSON()) : (gathered = true));
  const dc = pc.createDataChannel('tabagent');
  await pc.setLocalDescription(await pc.createOffer());
  const offer = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', {}, { sdp: withoutCandidates(pc.localDescription.sdp), type: 'offer', trickle: true });
  t.equal(offer.status, 200);
  t.equal(offer.body.trickle, true);
  const id = offer.body.session_id;
  await pc.setRemoteDescription({ type: 'answer', sdp: withoutCandidates(offer.body.sdp) });

  await until('client gathering', () => (gathered ? true : undefined));
  t.ok(local.length > 0, 'the client has candidates to trickle');
  for (const c of local) t.equal((await request(h.baseUrl, 'POST', '/v1/webrtc/ice', {}, { session_id: id, candidate: c })).body.accepted, true);
  t.equal((await request(h.baseUrl, 'POST', '/v1/webrtc/ice', {}, { session_id: id, candidate: null })).status, 200, 'end of candidates');

  const remote: any[] = [];
  let since = 0;
  await until('server candidates', async () => {
    const r = (await request(h.baseUrl, 'GET', `/v1/webrtc/session/${id}/candidates?since=${since}`)).body;
    remote.push(...r.candidates);
    since = r.next;
    return r.complete ? true : undefined;
  });
  t.ok(remote.length > 0, 'the server trickled its candidates');
  t.equal(since, remote.length, '`next` counts every candidate read');
  t.same((await request(h.baseUrl, 'GET', `/v1/webrtc/session/${id}/candidates?since=${since}`)).body.candidates, [], 'nothing twice');
  t.ok(remote.every((c) => / typ host/.test(c.candidate)), 'host candidates only: no STUN server is asked by default');
  for (const c of remote) await pc.addIceCandidate(c);

  await until('channel open', () => (dc.readyState === 'open' ? true : undefined));
  const reply = new Promise<any>((r) => (dc.onmessage = (ev: any) => r(JSON.parse(ev.data))));
  dc.send(JSON.stringify({ request_id: 't1', route: 'health' }));
  t.match(await reply, { request_id: 't1', success: true, data: { status: 'ok' } });
  const info = (await request(h.baseUrl, 'GET', `/v1/webrtc/session/${id}`)).body;
  t.match(info, { state: 'connected', ice_gathering_state: 'complete', channel: { state: 'open' }, messages_in: 1, messages_out: 1 });
});

t.test('without trickle the answer SDP holds every server candidate', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const pc = new wrtc.RTCPeerConnection();
  t.teardown(() => pc.close());
  pc.createDataChannel('tabagent');
  const gathered = new Promise<void>((r) => (pc.onicecandidate = (ev: any) => !ev.candidate && r()));
  await pc.setLocalDescription(await pc.createOffer());
  await gathered;
  const offer = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', {}, { sdp: pc.localDescription.sdp, type: 'offer' });
  t.equal(offer.body.type, 'answer');
  t.equal(offer.body.trickle, false);
  const lines = candidateLines(offer.body.sdp);
  t.ok(lines.length > 0, 'candidates in the answer');
  t.ok(lines.every((l) => / typ host/.test(l)), 'host candidates only');
  const listed = (await request(h.baseUrl, 'GET', `/v1/webrtc/session/${offer.body.session_id}/candidates`)).body;
  t.equal(listed.complete, true, 'gathering was complete before the reply');
  t.equal(listed.candidates.length, lines.length, 'the SDP holds every candidate');
});

t.test('session state follows the connection: new, connected, closed when the peer goes away', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const offer = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', {}, { peer_id: 'state-peer' });
  t.equal(offer.body.type, 'offer');
  const id = offer.body.session_id;
  const get = async (): Promise<any> => (await request(h.baseUrl, 'GET', `/v1/webrtc/session/${id}`)).body;
  t.match(await get(), { state: 'new', flow: 'server_offer', signaling_state: 'have-local-offer', peer_id: 'state-peer', remote_address: '127.0.0.1', channel: { label: 'tabagent', state: 'connecting' }, close_reason: null });

  const pc = new wrtc.RTCPeerConnection();
  const channel = new Promise<any>((r) => (pc.ondatachannel = (ev: any) => r(ev.channel)));
  const gathered = new Promise<void>((r) => (pc.onicecandidate = (ev: any) => !ev.candidate && r()));
  await pc.setRemoteDescription({ type: 'offer', sdp: offer.body.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered;
  const answered = await request(h.baseUrl, 'POST', '/v1/webrtc/answer', {}, { session_id: id, sdp: pc.localDescription.sdp, type: 'answer' });
  t.equal(answered.status, 200);
  t.equal(answered.body.signaling_state, 'stable');
  const again = await request(h.baseUrl, 'POST', '/v1/webrtc/answer', {}, { session_id: id, sdp: pc.localDescription.sdp, type: 'answer' });
  t.equal(again.status, 409, 'a second answer is refused');
  t.match(again.body.detail, /not waiting for an answer \(signaling state 'stable'\)/);
  const dc = await channel;
  await until('channel open', () => (dc.readyState === 'open' ? true : undefined));
  const connected = await until('connected', async () => {
    const s = await get();
    return s.state === 'connected' ? s : undefined;
  });
  t.match(connected, { signaling_state: 'stable', ice_connection_state: /connected|completed/, channel: { state: 'open' } });

  // The peer vanishes without DELETE: the server notices from the connection itself.
  dc.close();
  pc.close();
  const closed = await until('closed', async () => {
    const s = await get();
    return s.state === 'closed' ? s : undefined;
  });
  t.match(closed.close_reason, /data channel closed|peer connection closed/);
  t.equal(h.transport.sessions.size, 0, 'its resources are released');
  t.equal((await request(h.baseUrl, 'POST', '/v1/webrtc/ice', {}, { session_id: id, candidate: null })).status, 409, 'a closed session refuses more signalling');
});

t.test('signalling follows the HTTP transport origin and host rules', async (t) => {
  const h = await startHarness({}, { flags: { extension_ids: ['abcdefghijklmnopabcdefghijklmnop'], 'http.cors_origins': ['http://app.localhost:5173'] } });
  t.teardown(() => h.stop());
  const offer = { peer_id: 'o' };
  let r = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', { origin: 'https://evil.example' }, offer);
  t.equal(r.status, 403, 'a page from an origin not allowed cannot open a session');
  t.match(r.body.detail, /origin 'https:\/\/evil.example' is not allowed/);
  r = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', { host: 'evil.example' }, offer);
  t.equal(r.status, 403, 'a rebound host name is refused');
  t.match(r.body.detail, /host 'evil.example' is not allowed/);
  r = await request(h.baseUrl, 'OPTIONS', '/v1/webrtc/offer', { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
  t.equal(r.headers['access-control-allow-origin'], undefined, 'no preflight for a refused origin');
  t.equal(h.transport.sessions.size, 0, 'no session was opened');

  r = await request(h.baseUrl, 'OPTIONS', '/v1/webrtc/offer', { origin: 'http://app.localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' });
  t.ok(r.status >= 200 && r.status < 300, 'preflight of an allowed origin');
  t.equal(r.headers['access-control-allow-origin'], 'http://app.localhost:5173');
  r = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', { origin: 'http://app.localhost:5173' }, offer);
  t.equal(r.status, 200, 'a configured page origin opens a session');
  t.equal(r.headers['access-control-allow-origin'], 'http://app.localhost:5173');
  r = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', { origin: 'chrome-extension://abcdefghijklmnopabcdefghijklmnop' }, offer);
  t.equal(r.status, 200, 'a configured extension opens a session');
  t.equal(h.transport.sessions.size, 2);
});

t.test('the signalling port serves only signalling; the main port serves it too when both run', async (t) => {
  const h = await startHarness({}, { http: true });
  t.teardown(() => h.stop());
  const main = h.ctx.facts.listeners['http']!;
  t.not(main, h.baseUrl);
  t.equal((await request(h.baseUrl, 'POST', '/v1/chat/completions', {}, {})).status, 404, 'no other routes on --webrtc-port');
  const c = await TabAgentRtcClient.connect({ baseUrl: main, RTCPeerConnection: wrtc.RTCPeerConnection, peerId: 'main-port' });
  t.equal((await c.request<{ status: string }>('health')).status, 'ok');
  t.equal((await request(main, 'GET', `/v1/webrtc/session/${c.sessionId}`)).body.state, 'connected');
  t.equal((await request(h.baseUrl, 'GET', `/v1/webrtc/session/${c.sessionId}`)).body.peer_id, 'main-port', 'one session table behind both ports');
  await c.close();
  t.equal(h.transport.sessions.size, 0);
});

/** A UDP socket standing in for a STUN server: records whether anything sent it a binding request. */
async function fakeStun(): Promise<{ port: number; requests: () => number; close(): void }> {
  const sock = dgram.createSocket('udp4');
  let n = 0;
  sock.on('message', (m) => {
    // A STUN message: type 0x0001 (binding request) and the magic cookie 0x2112A442.
    if (m.length >= 20 && m.readUInt16BE(0) === 0x0001 && m.readUInt32BE(4) === 0x2112a442) n++;
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, requests: () => n, close: () => sock.close() };
}

t.test('ICE servers come from config, none by default', async (t) => {
  t.same(loadConfig({ flags: {}, env: {} }).config.webrtc.ice_servers, [], 'no STUN or TURN server unless configured');
  const stun = await fakeStun();
  t.teardown(() => stun.close());
  const h = await startHarness({ ice_servers: [{ urls: `stun:127.0.0.1:${stun.port}` }], ice_gather_timeout_ms: 1500 });
  t.teardown(() => h.stop());
  const offer = await request(h.baseUrl, 'POST', '/v1/webrtc/offer', {}, {});
  t.equal(offer.status, 200);
  await until('a STUN binding request', () => (stun.requests() > 0 ? true : undefined), 5000);
  t.ok(stun.requests() > 0, 'the configured STUN server is asked');
});
