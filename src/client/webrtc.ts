/** Client of the server's WebRTC data channel, for pages (and Node with @roamhq/wrtc): handshake over fetch, then the request contract with streaming, cancel and reassembly. */
import { TabAgentError, isErrorBody, type ErrorCode } from '../protocol/errors.js';
import { ChannelWriter } from '../transports/webrtc/channel-writer.js';
import { effectiveMaxMessageSize, isFragment, Reassembler } from '../transports/webrtc/framing.js';

/** The slice of RTCDataChannel this client uses. */
export interface ClientDataChannel {
  readonly label: string;
  readonly readyState: string;
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold?: number;
  onbufferedamountlow?: ((ev: unknown) => void) | null;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

interface CandidateLike {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

/** The slice of RTCPeerConnection this client uses (the browser's, or @roamhq/wrtc's in Node). */
export interface ClientPeerConnection {
  readonly connectionState: string;
  readonly iceGatheringState: string;
  readonly localDescription: { type: string; sdp: string } | null;
  readonly sctp: { readonly maxMessageSize: number } | null;
  createDataChannel(label: string, init?: { ordered?: boolean }): ClientDataChannel;
  createOffer(): Promise<{ type: string; sdp?: string }>;
  createAnswer(): Promise<{ type: string; sdp?: string }>;
  setLocalDescription(desc: { type: string; sdp?: string }): Promise<void>;
  setRemoteDescription(desc: { type: string; sdp: string }): Promise<void>;
  addIceCandidate(candidate: CandidateLike): Promise<void>;
  close(): void;
  onicecandidate: ((ev: { candidate: CandidateLike | null }) => void) | null;
  onconnectionstatechange: ((ev: unknown) => void) | null;
  ondatachannel: ((ev: { channel: ClientDataChannel }) => void) | null;
}

export type PeerConnectionCtor = new (config: { iceServers: IceServerConfig[] }) => ClientPeerConnection;

export interface IceServerConfig {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** A msgpack codec (e.g. msgpackr's pack/unpack): with it the channel carries binary msgpack instead of JSON text. */
export interface BinaryCodec {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; body?: string }) => Promise<{ ok: boolean; status: number; statusText: string; json(): Promise<unknown> }>;

export interface ConnectOptions {
  /** Where the signalling routes are served, e.g. http://127.0.0.1:8002 (--webrtc-port) or the main HTTP port. */
  baseUrl: string;
  /** The client id the server limits sessions by. */
  peerId?: string;
  /** 'client_offer' (default): this side offers; 'server_offer': the server offers and this side answers. */
  flow?: 'client_offer' | 'server_offer';
  /** Trickle ICE both ways instead of exchanging complete SDPs (default false). */
  trickle?: boolean;
  iceServers?: IceServerConfig[];
  /** Send msgpack (binary) instead of JSON text. */
  codec?: BinaryCodec;
  /** Default: globalThis.RTCPeerConnection. */
  RTCPeerConnection?: PeerConnectionCtor;
  /** Default: globalThis.fetch. */
  fetch?: FetchLike;
  /** Extra headers on signalling requests (an API key, for example). */
  headers?: Record<string, string>;
  /** Give up connecting after this long (default 15 s). */
  timeoutMs?: number;
  /** Largest reassembled reply accepted (default 64 MiB). */
  maxMessageBytes?: number;
}

export interface RequestOptions {
  requestId?: string;
  priority?: 'interactive' | 'normal' | 'background';
  /** Receives each chunk frame's data of a streaming request, before the promise resolves. */
  onChunk?: (data: unknown) => void;
  /** Aborting sends stop_generation for this request; a generation then resolves with what it produced. */
  signal?: AbortSignal;
}

interface Pending {
  resolve: (data: unknown) => void;
  reject: (err: TabAgentError) => void;
  onChunk?: (data: unknown) => void;
  messageId?: number;
}

const decoder = new TextDecoder();
const codeForStatus: Record<number, ErrorCode> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'PAYLOAD_TOO_LARGE', 429: 'RATE_LIMIT_EXCEEDED', 503: 'UNAVAILABLE', 504: 'TIMEOUT' };

let seq = 0;

export class TabAgentRtcClient {
  /** Called once when the channel closes (by either side); pending requests have been rejected. */
  onclose: ((reason: string) => void) | null = null;
  /** Errors the server could not tie to a request (a message it could not decode at all). */
  onerror: ((err: TabAgentError) => void) | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly writer: ChannelWriter;
  private readonly reassembler: Reassembler;
  private closedReason: string | null = null;

  private constructor(
    readonly sessionId: string,
    private readonly pc: ClientPeerConnection,
    private readonly channel: ClientDataChannel,
    private readonly opts: ConnectOptions,
  ) {
    channel.binaryType = 'arraybuffer';
    this.reassembler = new Reassembler(opts.maxMessageBytes ?? 64 * 1024 * 1024);
    this.writer = new ChannelWriter(channel, {
      maxMessageSize: () => effectiveMaxMessageSize(pc.sctp?.maxMessageSize),
      maxQueuedBytes: Number.MAX_SAFE_INTEGER,
      onOverflow: () => {},
    });
    channel.onmessage = (ev) => this.receive(ev.data);
    channel.onclose = () => this.shutdown('the data channel closed');
  }

  /** Opens a session with the server and resolves once the `tabagent` channel is open. */
  static async connect(opts: ConnectOptions): Promise<TabAgentRtcClient> {
    const Ctor = opts.RTCPeerConnection ?? (globalThis as unknown as { RTCPeerConnection?: PeerConnectionCtor }).RTCPeerConnection;
    if (!Ctor) throw new TabAgentError('UNAVAILABLE', 'no RTCPeerConnection here: pass ConnectOptions.RTCPeerConnection');
    const signal = new Signalling(opts);
    const pc = new Ctor({ iceServers: opts.iceServers ?? [] });
    const trickle = opts.trickle ?? false;
    const local: CandidateLike[] = [];
    let gathered!: () => void;
    const gathering = new Promise<void>((r) => (gathered = r));
    let sessionId: string | undefined;
    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return gathered();
      const c = { candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid ?? null, sdpMLineIndex: ev.candidate.sdpMLineIndex ?? null };
      if (trickle && sessionId) void signal.post('/v1/webrtc/ice', { session_id: sessionId, candidate: c }).catch(() => {});
      else local.push(c);
    };
    const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
    try {
      let channel: ClientDataChannel;
      if ((opts.flow ?? 'client_offer') === 'client_offer') {
        channel = pc.createDataChannel('tabagent', { ordered: true });
        await pc.setLocalDescription(await pc.createOffer());
        if (!trickle) await within(gathering, 5_000);
        const reply = (await signal.post('/v1/webrtc/offer', { sdp: pc.localDescription!.sdp, type: 'offer', peer_id: opts.peerId, trickle })) as { session_id: string; sdp: string };
        sessionId = reply.session_id;
        await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
        if (trickle) {
          for (const c of local.splice(0)) await signal.post('/v1/webrtc/ice', { session_id: sessionId, candidate: c });
          void pollCandidates(signal, pc, sessionId, deadline);
        }
      } else {
        const reply = (await signal.post('/v1/webrtc/offer', { peer_id: opts.peerId, trickle })) as { session_id: string; sdp: string };
        sessionId = reply.session_id;
        const offered = new Promise<ClientDataChannel>((resolve) => (pc.ondatachannel = (ev) => resolve(ev.channel)));
        await pc.setRemoteDescription({ type: 'offer', sdp: reply.sdp });
        // The server's candidates come by polling; the channel only arrives once ICE connects, so poll from now.
        if (trickle) void pollCandidates(signal, pc, sessionId, deadline);
        await pc.setLocalDescription(await pc.createAnswer());
        if (!trickle) await within(gathering, 5_000);
        await signal.post('/v1/webrtc/answer', { session_id: sessionId, sdp: pc.localDescription!.sdp, type: 'answer' });
        channel = await withDeadline(offered, deadline, 'the server offered no data channel');
      }
      const id = sessionId;
      await withDeadline(opened(channel), deadline, `the data channel did not open (connection state '${pc.connectionState}')`);
      return new TabAgentRtcClient(id, pc, channel, opts);
    } catch (err) {
      pc.close();
      if (sessionId) void signal.delete(`/v1/webrtc/session/${sessionId}`).catch(() => {});
      throw err instanceof TabAgentError ? err : new TabAgentError('UNAVAILABLE', `WebRTC connection failed: ${(err as Error).message}`);
    }
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  /** Sends one request; resolves with its reply data, or rejects with a TabAgentError carrying the server's code. */
  request<T = unknown>(route: string, payload?: unknown, opts: RequestOptions = {}): Promise<T> {
    if (this.closedReason !== null) return Promise.reject(new TabAgentError('UNAVAILABLE', `the session is closed: ${this.closedReason}`));
    const requestId = opts.requestId ?? `rtc-${Date.now().toString(36)}-${(++seq).toString(36)}`;
    const frame: Record<string, unknown> = { request_id: requestId, route, payload: payload ?? null };
    if (opts.priority) frame['priority'] = opts.priority;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { resolve: resolve as (data: unknown) => void, reject };
      if (opts.onChunk) p.onChunk = opts.onChunk;
      this.pending.set(requestId, p);
      try {
        const messageId = this.writer.write(this.opts.codec ? this.opts.codec.encode(frame) : JSON.stringify(frame));
        if (messageId !== undefined) p.messageId = messageId;
      } catch (err) {
        this.pending.delete(requestId);
        reject(err instanceof TabAgentError ? err : new TabAgentError('UNAVAILABLE', (err as Error).message));
        return;
      }
      if (opts.signal) {
        if (opts.signal.aborted) void this.stop(requestId);
        else opts.signal.addEventListener('abort', () => void this.stop(requestId), { once: true });
      }
    });
  }

  /** Cancels a request in flight (stop_generation). */
  stop(requestId: string): Promise<unknown> {
    return this.request('stop_generation', { request_id: requestId }, { priority: 'interactive' }).catch(() => undefined);
  }

  /** Closes the channel and the peer connection, and tells the server (DELETE) so it frees the session at once. */
  async close(): Promise<void> {
    if (this.closedReason !== null) return;
    // The server first, so it records why the session ended; then this side, whatever the server said.
    await new Signalling(this.opts).delete(`/v1/webrtc/session/${this.sessionId}`).catch(() => {});
    this.shutdown('closed by the client');
  }

  private shutdown(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.writer.close();
    this.reassembler.clear();
    for (const p of this.pending.values()) p.reject(new TabAgentError('UNAVAILABLE', `the session closed: ${reason}`));
    this.pending.clear();
    this.channel.onmessage = null;
    this.channel.onclose = null;
    for (const closable of [this.channel, this.pc]) {
      try {
        closable.close();
      } catch {
        // Already closed; the peer connection must still be closed if the channel was.
      }
    }
    this.onclose?.(reason);
  }

  private receive(data: unknown): void {
    let frame: unknown;
    try {
      if (typeof data === 'string') frame = JSON.parse(data);
      else {
        const bytes = new Uint8Array(data as ArrayBuffer);
        if (isFragment(bytes)) {
          const whole = this.reassembler.push(bytes);
          if (!whole) return;
          frame = whole.text ? JSON.parse(decoder.decode(whole.bytes)) : this.decodeBinary(whole.bytes);
        } else frame = this.decodeBinary(bytes);
      }
    } catch (err) {
      this.onerror?.(err instanceof TabAgentError ? err : new TabAgentError('PROTOCOL_ERROR', `undecodable message from the server: ${(err as Error).message}`));
      return;
    }
    this.dispatch(frame as { request_id: string | null; event?: string; success?: boolean; data?: unknown; error?: unknown });
  }

  private decodeBinary(bytes: Uint8Array): unknown {
    if (!this.opts.codec) throw new TabAgentError('PROTOCOL_ERROR', 'a binary message arrived but no codec was given');
    return this.opts.codec.decode(bytes);
  }

  private dispatch(frame: { request_id: string | null; event?: string; success?: boolean; data?: unknown; error?: unknown }): void {
    if (frame.event === 'chunk') {
      if (frame.request_id !== null) this.pending.get(frame.request_id)?.onChunk?.(frame.data);
      return;
    }
    let id = frame.request_id;
    const error = frame.success === false ? toError(frame.error) : undefined;
    // An error about a message the server could not reassemble names the fragment message id instead.
    if (id === null && error) {
      const messageId = (error.details as { message_id?: unknown } | undefined)?.message_id;
      for (const [rid, p] of this.pending) if (p.messageId !== undefined && p.messageId === messageId) id = rid;
      if (id === null) {
        this.onerror?.(error);
        return;
      }
    }
    if (id === null) return;
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (error) p.reject(error);
    else p.resolve(frame.data);
  }
}

/** Signalling over fetch: JSON bodies, problem+json errors turned into TabAgentError. */
class Signalling {
  private readonly base: string;
  private readonly fetch: FetchLike;

  constructor(private readonly opts: ConnectOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    const f = opts.fetch ?? (globalThis as unknown as { fetch?: FetchLike }).fetch;
    if (!f) throw new TabAgentError('UNAVAILABLE', 'no fetch here: pass ConnectOptions.fetch');
    // A page's fetch throws 'Illegal invocation' when called as a method of another object.
    this.fetch = opts.fetch ? f : f.bind(globalThis);
  }

  post(path: string, body: unknown): Promise<unknown> {
    return this.call('POST', path, JSON.stringify(body));
  }

  get(path: string): Promise<unknown> {
    return this.call('GET', path);
  }

  delete(path: string): Promise<unknown> {
    return this.call('DELETE', path);
  }

  private async call(method: string, path: string, body?: string): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.opts.headers };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const init: Parameters<FetchLike>[1] = { method, headers };
    if (body !== undefined) init.body = body;
    const res = await this.fetch(this.base + path, init);
    const json = await res.json().catch(() => null);
    if (res.ok) return json;
    // RFC 7807 problem+json: {type, title, status, detail, code, errors?}.
    const problem = (json ?? {}) as { code?: string; detail?: string; title?: string; errors?: unknown };
    const code = (problem.code as ErrorCode | undefined) ?? codeForStatus[res.status] ?? 'INTERNAL_ERROR';
    throw new TabAgentError(code, `${method} ${path}: ${problem.detail ?? problem.title ?? res.statusText} (HTTP ${res.status})`, problem.errors);
  }
}

function toError(body: unknown): TabAgentError {
  if (isErrorBody(body)) return new TabAgentError(body.code, body.message, body.details);
  return new TabAgentError('PROTOCOL_ERROR', 'the server sent an error frame without a usable error body');
}

/** Fetches the server's trickled candidates until its gathering is complete, the channel is open, or time is up. */
async function pollCandidates(signal: Signalling, pc: ClientPeerConnection, sessionId: string, deadline: number): Promise<void> {
  let since = 0;
  let wait = 10;
  const settled = () => pc.connectionState === 'connected' || pc.connectionState === 'closed' || pc.connectionState === 'failed';
  while (Date.now() < deadline && !settled()) {
    const r = (await signal.get(`/v1/webrtc/session/${sessionId}/candidates?since=${since}`).catch(() => null)) as { candidates: CandidateLike[]; next: number; complete: boolean } | null;
    if (!r) return;
    for (const c of r.candidates) await pc.addIceCandidate(c).catch(() => {});
    since = r.next;
    if (r.complete || settled()) return;
    await sleep(wait);
    wait = Math.min(wait * 2, 200);
  }
}

function opened(channel: ClientDataChannel): Promise<void> {
  // Some implementations (@roamhq/wrtc) may report 'open' before a listener could be attached.
  if (channel.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    channel.onopen = () => resolve();
    channel.onclose = () => reject(new TabAgentError('UNAVAILABLE', 'the data channel closed before it opened'));
    if (channel.readyState === 'open') resolve();
  });
}

/** Waits for `p`, or `ms` at most (without leaving a timer behind). */
function within(p: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TabAgentError('TIMEOUT', `${what} in time`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Shorthand for TabAgentRtcClient.connect. */
export function connectTabAgent(opts: ConnectOptions): Promise<TabAgentRtcClient> {
  return TabAgentRtcClient.connect(opts);
}
