/** One WebRTC session: a peer connection, its `tabagent` channel, the server's ICE candidates, and its state as the connection reports it. */
import type * as v from 'valibot';
import type { SessionInfoSchema } from '../../protocol/routes/webrtc.js';
import { TabAgentError } from '../../protocol/errors.js';
import type { Log } from '../../runtime/logger.js';
import type { Gateway } from '../gateway.js';
import { CHANNEL_LABEL, ChannelLink } from './channel.js';
import { effectiveMaxMessageSize } from './framing.js';
import type { ConnectionState, IceCandidateInit, IceServer, RtcDataChannel, RtcPeerConnection, RtcPeerConnectionCtor } from './rtc.js';

export type SessionFlow = 'client_offer' | 'server_offer';
export type SessionInfo = v.InferOutput<typeof SessionInfoSchema>;

export interface SessionOptions {
  id: string;
  flow: SessionFlow;
  peerId: string | null;
  remoteAddress: string | null;
  iceServers: IceServer[];
  maxMessageBytes: number;
  gateway: Gateway;
  log: Log;
  PeerConnection: RtcPeerConnectionCtor;
  /** The session ended by itself (channel closed, ICE failed, peer not reading). */
  onGone: (session: WebRtcSession, reason: string) => void;
}

export class WebRtcSession {
  readonly id: string;
  readonly flow: SessionFlow;
  readonly peerId: string | null;
  readonly remoteAddress: string | null;
  readonly createdAt = Date.now();
  lastActivity = Date.now();
  /** When the connection last entered a state other than connected (for the handshake timeout). */
  notConnectedSince = Date.now();
  state: ConnectionState = 'new';
  closeReason: string | null = null;
  readonly pc: RtcPeerConnection;
  private link: ChannelLink | undefined;
  private readonly localCandidates: IceCandidateInit[] = [];
  private gatheringComplete = false;
  private readonly gatherWaiters = new Set<() => void>();
  /** Remote candidates that arrived before the remote description (server-offer flow). */
  private readonly pendingRemote: (IceCandidateInit | null)[] = [];
  private remoteSet = false;

  constructor(private readonly opts: SessionOptions) {
    this.id = opts.id;
    this.flow = opts.flow;
    this.peerId = opts.peerId;
    this.remoteAddress = opts.remoteAddress;
    this.pc = new opts.PeerConnection({ iceServers: opts.iceServers });
    this.pc.onconnectionstatechange = () => this.onState();
    this.pc.onicecandidate = (ev) => {
      if (ev.candidate && ev.candidate.candidate) {
        const c = ev.candidate;
        this.localCandidates.push({ candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null, usernameFragment: c.usernameFragment ?? null });
      } else this.markGathered();
    };
    this.pc.ondatachannel = (ev) => this.adopt(ev.channel);
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get inFlight(): number {
    return this.link?.inFlight ?? 0;
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  /** Client-offer flow: applies the offer and returns the answer SDP (after gathering unless trickling). */
  async answerOffer(sdp: string, trickle: boolean, gatherTimeoutMs: number): Promise<string> {
    if (!/^m=application /m.test(sdp)) {
      throw new TabAgentError('BAD_REQUEST', `the offer has no data channel (no m=application section): create the '${CHANNEL_LABEL}' data channel before createOffer()`);
    }
    await this.applyRemote({ type: 'offer', sdp }, 'offer');
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return this.localSdp(trickle, gatherTimeoutMs);
  }

  /** Server-offer flow: creates the `tabagent` channel and returns the offer SDP. */
  async makeOffer(trickle: boolean, gatherTimeoutMs: number): Promise<string> {
    this.adopt(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return this.localSdp(trickle, gatherTimeoutMs);
  }

  /** Server-offer flow: applies the client's answer. */
  async acceptAnswer(sdp: string): Promise<void> {
    if (this.flow !== 'server_offer') {
      throw new TabAgentError('CONFLICT', `session ${this.id} began with the client's offer and already has the server's answer; webrtc_answer is for sessions the server offered`, { session_id: this.id, flow: this.flow });
    }
    if (this.pc.signalingState !== 'have-local-offer') {
      throw new TabAgentError('CONFLICT', `session ${this.id} is not waiting for an answer (signaling state '${this.pc.signalingState}'): the answer was already applied`, { session_id: this.id, signaling_state: this.pc.signalingState });
    }
    await this.applyRemote({ type: 'answer', sdp }, 'answer');
  }

  /** Adds a client candidate; null (or an empty line) marks the end of the client's candidates. */
  async addCandidate(candidate: IceCandidateInit | null): Promise<void> {
    if (!this.remoteSet) {
      if (this.pendingRemote.length >= 256) throw new TabAgentError('BAD_REQUEST', `session ${this.id}: too many candidates before the answer`);
      this.pendingRemote.push(candidate);
      return;
    }
    await this.applyCandidate(candidate);
  }

  /** The server's candidates from index `since` on. */
  candidates(since: number): { candidates: IceCandidateInit[]; next: number; complete: boolean } {
    return { candidates: this.localCandidates.slice(since), next: this.localCandidates.length, complete: this.gatheringComplete };
  }

  info(): SessionInfo {
    const ch = this.link?.channel;
    const stats = this.link?.stats;
    const live = !this.closed;
    return {
      session_id: this.id,
      state: this.state,
      flow: this.flow,
      signaling_state: live ? this.pc.signalingState : 'closed',
      ice_connection_state: live ? this.pc.iceConnectionState : 'closed',
      ice_gathering_state: live ? this.pc.iceGatheringState : 'complete',
      peer_id: this.peerId,
      remote_address: this.remoteAddress,
      channel: ch
        ? { label: ch.label, state: live ? ch.readyState : 'closed', max_message_size: this.maxMessageSize(), buffered_bytes: live ? (this.link?.bufferedBytes ?? 0) : 0 }
        : null,
      created_at: new Date(this.createdAt).toISOString(),
      last_activity_at: new Date(this.lastActivity).toISOString(),
      requests_in_flight: this.inFlight,
      messages_in: stats?.messagesIn ?? 0,
      messages_out: stats?.messagesOut ?? 0,
      bytes_in: stats?.bytesIn ?? 0,
      bytes_out: stats?.bytesOut ?? 0,
      close_reason: this.closeReason,
    };
  }

  drain(timeoutMs: number): Promise<void> {
    return this.link ? this.link.drain(timeoutMs) : Promise.resolve();
  }

  /** Cancels the session's requests and closes its channel and peer connection. Idempotent. */
  close(reason: string): void {
    if (this.closed) return;
    this.closeReason = reason;
    this.state = 'closed';
    this.link?.close();
    this.markGathered();
    this.pc.onconnectionstatechange = null;
    this.pc.onicecandidate = null;
    this.pc.ondatachannel = null;
    try {
      this.pc.close();
    } catch (err) {
      this.opts.log.warn('peer connection close failed', { session_id: this.id, err });
    }
  }

  private maxMessageSize(): number {
    return effectiveMaxMessageSize(this.closed ? null : this.pc.sctp?.maxMessageSize);
  }

  private adopt(channel: RtcDataChannel): void {
    if (channel.label !== CHANNEL_LABEL || this.link) {
      this.opts.log.warn('data channel refused', { session_id: this.id, label: channel.label, reason: this.link ? 'a session has one channel' : `only '${CHANNEL_LABEL}' is served` });
      channel.close();
      return;
    }
    this.link = new ChannelLink(channel, {
      gateway: this.opts.gateway,
      log: this.opts.log,
      maxMessageBytes: this.opts.maxMessageBytes,
      maxMessageSize: () => this.maxMessageSize(),
      onActivity: () => this.touch(),
      onGone: (reason) => this.opts.onGone(this, reason),
    });
  }

  private onState(): void {
    if (this.closed) return;
    const next = this.pc.connectionState;
    if (next === this.state) return;
    this.opts.log.debug('session state', { session_id: this.id, from: this.state, to: next });
    if (next !== 'connected' && this.state === 'connected') this.notConnectedSince = Date.now();
    this.state = next;
    this.touch();
    if (next === 'failed') this.opts.onGone(this, 'ICE failed: the peers found no working path');
    if (next === 'closed') this.opts.onGone(this, 'the peer connection closed');
  }

  private async applyRemote(desc: { type: 'offer' | 'answer'; sdp: string }, what: string): Promise<void> {
    try {
      await this.pc.setRemoteDescription(desc);
    } catch (err) {
      throw new TabAgentError('BAD_REQUEST', `malformed ${what} SDP: ${(err as Error).message}`, { session_id: this.id });
    }
    this.remoteSet = true;
    for (const c of this.pendingRemote.splice(0)) await this.applyCandidate(c).catch((err: unknown) => this.opts.log.warn('queued ICE candidate refused', { session_id: this.id, err }));
  }

  private async applyCandidate(candidate: IceCandidateInit | null): Promise<void> {
    if (candidate === null || candidate.candidate === '') return;
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      throw new TabAgentError('BAD_REQUEST', `invalid ICE candidate: ${(err as Error).message}`, { session_id: this.id, candidate: candidate.candidate });
    }
  }

  private async localSdp(trickle: boolean, gatherTimeoutMs: number): Promise<string> {
    if (!trickle && !this.gatheringComplete) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, gatherTimeoutMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.gatherWaiters.add(() => done());
      });
    }
    if (this.closed) throw new TabAgentError('CONFLICT', `session ${this.id} closed during the handshake: ${this.closeReason}`);
    const desc = this.pc.localDescription;
    if (!desc) throw new TabAgentError('INTERNAL_ERROR', `session ${this.id} has no local description`);
    return desc.sdp;
  }

  private markGathered(): void {
    this.gatheringComplete = true;
    for (const w of this.gatherWaiters) w();
    this.gatherWaiters.clear();
  }
}
