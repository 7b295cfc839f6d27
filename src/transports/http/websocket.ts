/** The WebSocket carrier at /v1/ws: the shared request contract in JSON text or msgpack binary frames, with per-socket backpressure. */
import { Packr } from 'msgpackr';
import type { OutboundFrame } from '../../protocol/contract.js';
import { TabAgentError, toTabAgentError } from '../../protocol/errors.js';
import { CarrierSession } from '../carrier-session.js';
import { deltaOf } from './bus-routes.js';
import type { ListenerContext } from './context.js';
import { Exchange, type ExchangeOwner } from './exchange.js';
import { parseJsonBody } from './json.js';
import type { RateLimiter } from './rate-limit.js';
import type { AccessPolicy } from './security.js';
import type { TemplatedApp, WebSocket } from './uws.js';

/** Plain msgpack maps (no records), so any msgpack library on the client side can read the frames. */
const msgpack = new Packr({ useRecords: false, moreTypes: false });

interface Queued {
  frame: OutboundFrame;
  binary: boolean;
  /** Size estimate for the queue bound (deltas count their text). */
  bytes: number;
}

interface Socket {
  session: CarrierSession;
  /** The client's address, for the rate limit. */
  address: string;
  /** Reply format per request id: a request in msgpack gets msgpack frames back. */
  formats: Map<string, boolean>;
  lastBinary: boolean;
  queue: Queued[];
  queuedBytes: number;
  closed: boolean;
}

export interface WsEndpoint {
  readonly inFlight: number;
  cancelAll(): void;
  closeAll(): void;
}

export const WS_PATH = '/v1/ws';

export function attachWebSocket(app: TemplatedApp, lc: ListenerContext, policy: AccessPolicy, limiter: RateLimiter, draining: () => boolean): WsEndpoint {
  const sockets = new Set<WebSocket<Socket>>();
  const stats = lc.stats;
  const cfg = lc.config().http;
  /** Above this much unsent data on a socket, frames wait in our queue (where chunk deltas merge) instead of uWS's buffer. */
  const soft = cfg.ws_max_backpressure_bytes;
  const upgradeOwner: ExchangeOwner = {
    finished(_ex, status) {
      stats.responses_by_status[status] = (stats.responses_by_status[status] ?? 0) + 1;
    },
    disconnected() {},
  };

  const transmit = (ws: WebSocket<Socket>, item: Queued): void => {
    const data = item.binary ? msgpack.pack(item.frame) : JSON.stringify(item.frame);
    ws.cork(() => ws.send(data, item.binary));
    stats.ws_frames_out++;
    const buffered = ws.getBufferedAmount();
    if (buffered > stats.ws_buffered_bytes_max) stats.ws_buffered_bytes_max = buffered;
  };

  const flush = (ws: WebSocket<Socket>): void => {
    const s = ws.getUserData();
    while (!s.closed && s.queue.length > 0 && ws.getBufferedAmount() < soft) {
      const item = s.queue.shift()!;
      s.queuedBytes -= item.bytes;
      transmit(ws, item);
    }
  };

  const send = (ws: WebSocket<Socket>, frame: OutboundFrame): void => {
    const s = ws.getUserData();
    if (s.closed) return;
    const id = frame.request_id;
    const binary = id !== null && s.formats.has(id) ? s.formats.get(id)! : s.lastBinary;
    if (id !== null && 'success' in frame) s.formats.delete(id);
    if (s.queue.length === 0 && ws.getBufferedAmount() < soft) return transmit(ws, { frame, binary, bytes: 0 });
    if (s.queue.length === 0) stats.ws_backpressure_events++;
    const delta = 'event' in frame ? deltaOf(frame.data) : undefined;
    const last = s.queue[s.queue.length - 1];
    if (delta !== undefined && last && 'event' in last.frame && last.frame.request_id === id && last.binary === binary) {
      const prev = deltaOf(last.frame.data);
      if (prev !== undefined) {
        last.frame = { request_id: id!, event: 'chunk', data: { delta: prev + delta } };
        last.bytes += delta.length;
        s.queuedBytes += delta.length;
        return checkBound(ws, s);
      }
    }
    const bytes = delta?.length ?? JSON.stringify(frame).length;
    s.queue.push({ frame, binary, bytes });
    s.queuedBytes += bytes;
    checkBound(ws, s);
  };

  const checkBound = (ws: WebSocket<Socket>, s: Socket): void => {
    if (s.queuedBytes <= soft) return;
    stats.ws_closed_slow_reader++;
    lc.log.warn('websocket reader too slow; closing it', { queued_bytes: s.queuedBytes, buffered_bytes: ws.getBufferedAmount() });
    s.closed = true;
    s.session.close();
    ws.end(1013, 'reader too slow: too much unsent data');
  };

  app.ws<Socket>(WS_PATH, {
    // uWS drops a connection whose message passes this; up to twice the configured limit the server answers
    // with an error frame instead, so a too-big request costs only itself, not the socket's other requests.
    maxPayloadLength: Math.min(2 * cfg.ws_max_payload_bytes, 2 ** 31 - 1),
    // Our own queue bounds memory (see `soft`); uWS must never silently drop a frame of the contract.
    maxBackpressure: 1024 * 1024 * 1024,
    closeOnBackpressureLimit: 0,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const ex = new Exchange(res, req, upgradeOwner);
      if (draining()) return ex.fail(new TabAgentError('UNAVAILABLE', 'the server is shutting down'));
      const err = policy.checkHost(ex.host) ?? (ex.origin ? policy.checkOrigin(ex.origin, ex.host) : undefined);
      if (err) return ex.fail(err);
      ex.responded = true;
      const data: Socket = { session: undefined as unknown as CarrierSession, address: ex.remoteAddress, formats: new Map(), lastBinary: false, queue: [], queuedBytes: 0, closed: false };
      res.cork(() => res.upgrade(data, key, protocol, extensions, context));
    },
    open: (ws) => {
      const s = ws.getUserData();
      s.session = new CarrierSession(lc.gateway, (frame) => send(ws, frame), lc.log);
      sockets.add(ws);
      stats.ws_connections_open = sockets.size;
      stats.ws_connections_total++;
    },
    message: (ws, message, isBinary) => {
      const s = ws.getUserData();
      stats.ws_messages_in++;
      s.lastBinary = isBinary;
      const limit = cfg.ws_max_payload_bytes;
      if (message.byteLength > limit) {
        return s.session.reject(new TabAgentError('PAYLOAD_TOO_LARGE', `the message (${message.byteLength} bytes) is larger than the limit of ${limit} bytes (http.ws_max_payload_bytes)`, { limit_bytes: limit }));
      }
      let decoded: unknown;
      try {
        decoded = isBinary ? msgpack.unpack(Buffer.from(message)) : parseJsonBody(Buffer.from(message).toString('utf8'), 'message');
      } catch (err) {
        const e = err instanceof TabAgentError ? err : new TabAgentError('PROTOCOL_ERROR', `message is not valid msgpack: ${toTabAgentError(err).message}`);
        return s.session.reject(e);
      }
      const id = typeof decoded === 'object' && decoded !== null ? (decoded as { request_id?: unknown }).request_id : undefined;
      const limited = limiter.check(() => s.address);
      if (limited) return s.session.reject(limited, typeof id === 'string' ? id : null);
      if (typeof id === 'string' && !s.formats.has(id)) s.formats.set(id, isBinary);
      s.session.handle(decoded);
    },
    drain: (ws) => flush(ws),
    close: (ws) => {
      const s = ws.getUserData();
      s.closed = true;
      s.session?.close();
      s.queue = [];
      sockets.delete(ws);
      stats.ws_connections_open = sockets.size;
    },
  });

  return {
    get inFlight() {
      let n = 0;
      for (const ws of sockets) n += ws.getUserData().session.inFlight;
      return n;
    },
    cancelAll() {
      for (const ws of sockets) ws.getUserData().session.close();
    },
    closeAll() {
      for (const ws of [...sockets]) ws.end(1001, 'server shutting down');
    },
  };
}
