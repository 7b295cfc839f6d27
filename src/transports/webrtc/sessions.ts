/** The WebRTC session manager: creates sessions per signalling request, enforces limits, times out idle or stalled ones, and remembers closed ones briefly. */
import { randomUUID } from 'node:crypto';
import type { PayloadOf } from '../../protocol/route.js';
import type { webrtcAnswer, webrtcCandidates, webrtcIce, webrtcOffer } from '../../protocol/routes/webrtc.js';
import { TabAgentError } from '../../protocol/errors.js';
import type { Config } from '../../runtime/config.js';
import type { Log } from '../../runtime/logger.js';
import type { Gateway } from '../gateway.js';
import type { IceCandidateInit, RtcPeerConnectionCtor } from './rtc.js';
import { PeerReclaimer } from './reclaim.js';
import { WebRtcSession, type SessionInfo } from './session.js';

type WebRtcConfig = Config['webrtc'];

export interface SessionManagerDeps {
  /** Read on every use, so hot-reloaded values apply to the next session. */
  config: () => WebRtcConfig;
  gateway: Gateway;
  log: Log;
  PeerConnection: RtcPeerConnectionCtor;
}

/** Closed sessions stay visible to webrtc_session this long, so a client can read why its session ended. */
const TOMBSTONE_MS = 60_000;
const MAX_TOMBSTONES = 256;

export class SessionManager {
  private readonly live = new Map<string, WebRtcSession>();
  private readonly tombstones = new Map<string, { info: SessionInfo; at: number }>();
  private readonly reclaimer = new PeerReclaimer();
  private sweeper: NodeJS.Timeout | undefined;
  private accepting = true;

  constructor(private readonly deps: SessionManagerDeps) {}

  get size(): number {
    return this.live.size;
  }

  start(): void {
    this.accepting = true;
    const c = this.deps.config();
    const every = Math.min(1000, Math.max(20, Math.min(c.idle_timeout_ms, c.handshake_timeout_ms) / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /** Refuses new sessions (shutting down); live ones keep serving until closed. */
  stopAccepting(): void {
    this.accepting = false;
  }

  async offer(p: PayloadOf<typeof webrtcOffer>): Promise<{ session_id: string; type: 'answer' | 'offer'; sdp: string; created_at: string; trickle: boolean }> {
    const session = this.create(p.sdp !== undefined ? 'client_offer' : 'server_offer', p.peer_id ?? null, p._remote_address ?? null);
    const trickle = p.trickle ?? false;
    const gatherMs = this.deps.config().ice_gather_timeout_ms;
    try {
      const sdp = p.sdp !== undefined ? await session.answerOffer(p.sdp, trickle, gatherMs) : await session.makeOffer(trickle, gatherMs);
      this.deps.log.info('webrtc session opened', { session_id: session.id, flow: session.flow, peer_id: session.peerId, remote_address: session.remoteAddress, trickle });
      return { session_id: session.id, type: p.sdp !== undefined ? 'answer' : 'offer', sdp, created_at: new Date(session.createdAt).toISOString(), trickle };
    } catch (err) {
      // A session that never got through its offer is forgotten, not kept as a tombstone.
      session.close('the offer failed');
      this.live.delete(session.id);
      this.reclaimer.closed();
      throw err;
    }
  }

  async answer(p: PayloadOf<typeof webrtcAnswer>): Promise<{ session_id: string; state: SessionInfo['state']; signaling_state: string }> {
    const session = this.get(p.session_id);
    await session.acceptAnswer(p.sdp);
    return { session_id: session.id, state: session.state, signaling_state: session.pc.signalingState };
  }

  async ice(p: PayloadOf<typeof webrtcIce>): Promise<{ session_id: string; accepted: boolean }> {
    const session = this.get(p.session_id);
    const c = p.candidate;
    const candidate: IceCandidateInit | null = c === null ? null : typeof c === 'string' ? { candidate: c, sdpMid: '0', sdpMLineIndex: 0 } : c;
    await session.addCandidate(candidate);
    session.touch();
    return { session_id: session.id, accepted: true };
  }

  candidates(p: PayloadOf<typeof webrtcCandidates>): { session_id: string; candidates: IceCandidateInit[]; next: number; complete: boolean } {
    const session = this.get(p.session_id);
    return { session_id: session.id, ...session.candidates(p.since ?? 0) };
  }

  info(sessionId: string): SessionInfo {
    const session = this.live.get(sessionId);
    if (session) return session.info();
    const tomb = this.tombstones.get(sessionId);
    if (tomb) return tomb.info;
    throw this.unknown(sessionId);
  }

  close(sessionId: string, reason: string): { session_id: string; state: 'closed'; closed: boolean } {
    const session = this.live.get(sessionId);
    if (!session) {
      if (this.tombstones.has(sessionId)) return { session_id: sessionId, state: 'closed', closed: false };
      throw this.unknown(sessionId);
    }
    this.retire(session, reason);
    return { session_id: sessionId, state: 'closed', closed: true };
  }

  /** Waits for requests in flight on every channel, up to the timeout. */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.all([...this.live.values()].map((s) => s.drain(timeoutMs)));
  }

  closeAll(reason: string): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const s of [...this.live.values()]) this.retire(s, reason);
    this.tombstones.clear();
    this.reclaimer.stop();
  }

  private create(flow: 'client_offer' | 'server_offer', peerId: string | null, remoteAddress: string | null): WebRtcSession {
    if (!this.accepting) throw new TabAgentError('UNAVAILABLE', 'the server is shutting down and opens no new WebRTC sessions');
    const c = this.deps.config();
    if (this.live.size >= c.max_sessions) {
      throw new TabAgentError('BUSY', `the server already holds ${this.live.size} WebRTC sessions (webrtc.max_sessions = ${c.max_sessions}); close one or retry later`, { retry_after_ms: 1000, limit: c.max_sessions });
    }
    if (peerId !== null) {
      const n = this.count((s) => s.peerId === peerId);
      if (n >= c.max_sessions_per_client) {
        throw new TabAgentError('RATE_LIMIT_EXCEEDED', `peer '${peerId}' already has ${n} WebRTC sessions (webrtc.max_sessions_per_client = ${c.max_sessions_per_client}); close one with DELETE /v1/webrtc/session/{id}`, { peer_id: peerId, limit: c.max_sessions_per_client });
      }
    }
    if (remoteAddress !== null) {
      const n = this.count((s) => s.remoteAddress === remoteAddress);
      if (n >= c.max_sessions_per_address) {
        throw new TabAgentError('RATE_LIMIT_EXCEEDED', `address ${remoteAddress} already has ${n} WebRTC sessions (webrtc.max_sessions_per_address = ${c.max_sessions_per_address})`, { remote_address: remoteAddress, limit: c.max_sessions_per_address });
      }
    }
    const id = randomUUID();
    const session = new WebRtcSession({
      id,
      flow,
      peerId,
      remoteAddress,
      iceServers: c.ice_servers,
      maxMessageBytes: c.max_message_bytes,
      gateway: this.deps.gateway,
      log: this.deps.log.child({ session_id: id }),
      PeerConnection: this.deps.PeerConnection,
      onGone: (s, reason) => {
        // Events arrive from inside the peer connection's callbacks: close outside them.
        setImmediate(() => this.retire(s, reason));
      },
    });
    this.live.set(id, session);
    return session;
  }

  private retire(session: WebRtcSession, reason: string): void {
    if (this.live.get(session.id) !== session) return;
    this.live.delete(session.id);
    session.close(reason);
    this.reclaimer.closed();
    this.deps.log.info('webrtc session closed', { session_id: session.id, reason, messages_in: session.info().messages_in });
    this.tombstones.set(session.id, { info: session.info(), at: Date.now() });
    if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!);
  }

  private sweep(): void {
    const now = Date.now();
    const c = this.deps.config();
    for (const s of [...this.live.values()]) {
      if (s.state === 'connected') {
        if (s.inFlight === 0 && now - s.lastActivity > c.idle_timeout_ms) this.retire(s, `idle for more than ${c.idle_timeout_ms} ms (webrtc.idle_timeout_ms)`);
      } else if (now - s.notConnectedSince > c.handshake_timeout_ms) {
        this.retire(s, `not connected within ${c.handshake_timeout_ms} ms (webrtc.handshake_timeout_ms); last state '${s.state}'`);
      }
    }
    for (const [id, t] of this.tombstones) if (now - t.at > TOMBSTONE_MS) this.tombstones.delete(id);
  }

  private count(match: (s: WebRtcSession) => boolean): number {
    let n = 0;
    for (const s of this.live.values()) if (match(s)) n++;
    return n;
  }

  private get(sessionId: string): WebRtcSession {
    const session = this.live.get(sessionId);
    if (session) return session;
    if (this.tombstones.has(sessionId)) {
      throw new TabAgentError('CONFLICT', `webrtc session ${sessionId} is closed (${this.tombstones.get(sessionId)!.info.close_reason})`, { session_id: sessionId, state: 'closed' });
    }
    throw this.unknown(sessionId);
  }

  private unknown(sessionId: string): TabAgentError {
    return new TabAgentError('NOT_FOUND', `no webrtc session ${sessionId}: it never existed or was closed more than ${TOMBSTONE_MS / 1000} s ago`, { session_id: sessionId });
  }
}
