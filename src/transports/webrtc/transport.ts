/** The WebRTC transport actor: serves the webrtc_* signalling routes, runs the sessions' data channels, and listens on --webrtc-port. */
import { Actor } from '../../actors/actor.js';
import { Addresses } from '../../bus/addresses.js';
import type { PayloadOf } from '../../protocol/route.js';
import type { webrtcAnswer, webrtcCandidates, webrtcClose, webrtcIce, webrtcOffer, webrtcSession } from '../../protocol/routes/webrtc.js';
import type { ServerContext } from '../../server.js';
import { startHttpListener, type HttpListener } from '../http/listener.js';
import { transportFactories } from '../index.js';
import { RTCPeerConnection } from './rtc.js';
import { SessionManager } from './sessions.js';

export class WebRtcTransport extends Actor {
  readonly sessions: SessionManager;
  private listener: HttpListener | undefined;

  constructor(private readonly ctx: ServerContext) {
    super(Addresses.webrtcTransport, ctx.bus, ctx.log.child({ actor: Addresses.webrtcTransport }));
    this.sessions = new SessionManager({
      config: () => ctx.store.config.webrtc,
      gateway: ctx.gateway(Addresses.webrtcTransport),
      log: this.log,
      PeerConnection: RTCPeerConnection,
    });
    this.on('webrtc_offer', (p: PayloadOf<typeof webrtcOffer>) => this.sessions.offer(p));
    this.on('webrtc_answer', (p: PayloadOf<typeof webrtcAnswer>) => this.sessions.answer(p));
    this.on('webrtc_ice', (p: PayloadOf<typeof webrtcIce>) => this.sessions.ice(p));
    this.on('webrtc_candidates', (p: PayloadOf<typeof webrtcCandidates>) => this.sessions.candidates(p));
    this.on('webrtc_session', (p: PayloadOf<typeof webrtcSession>) => this.sessions.info(p.session_id));
    this.on('webrtc_close', (p: PayloadOf<typeof webrtcClose>) => this.sessions.close(p.session_id, 'closed by the client (webrtc_close)'));
  }

  override async start(): Promise<void> {
    this.sessions.start();
    const config = this.ctx.store.config;
    this.listener = await startHttpListener(this.ctx, { host: config.host, port: config.webrtc_port, name: 'webrtc', routeFilter: (r) => r.name.startsWith('webrtc_') });
    this.ctx.facts.listeners['webrtc'] = this.listener.url;
  }

  override async stop(): Promise<void> {
    this.sessions.stopAccepting();
    await this.listener?.close();
    this.listener = undefined;
    await this.sessions.drain(this.ctx.store.config.shutdown.drain_timeout_ms);
    this.sessions.closeAll('the server is shutting down');
  }
}

transportFactories.webrtc = (ctx) => new WebRtcTransport(ctx);
