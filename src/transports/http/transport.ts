/** The HTTP transport actor (transport.http): the main HTTP + WebSocket listener, the route listing and the listeners' counters. */
import { Actor } from '../../actors/actor.js';
import { Addresses } from '../../bus/addresses.js';
import type { ServerContext } from '../../server.js';
import { startHttpListener, type HttpListener } from './listener.js';
import { listenerStats } from './stats.js';
import { WS_PATH } from './websocket.js';

export class HttpTransport extends Actor {
  private listener: HttpListener | undefined;

  constructor(private readonly ctx: ServerContext) {
    super(Addresses.httpTransport, ctx.bus, ctx.log.child({ actor: Addresses.httpTransport }));
    this.on('routes', () => ({
      routes: ctx.routes.map((r) => ({
        name: r.name,
        owner: r.owner,
        summary: r.summary,
        priority: r.priority ?? 'normal',
        streaming: r.streaming ?? false,
        http: (r.http ?? []).map((b) => ({ method: b.method, path: b.path })),
      })),
      endpoints: (this.listener?.operations ?? []).map((op) => ({ method: op.method, path: op.path, operation: op.doc.operationId, route: op.doc.route ?? null })),
    }));
    this.on('http_stats', () => ({ listeners: [...listenerStats.values()] }));
  }

  override async start(): Promise<void> {
    const { host, port } = this.ctx.store.config;
    this.listener = await startHttpListener(this.ctx, { host, port, name: 'http', openai: true, websocket: true });
    this.ctx.facts.listeners['http'] = this.listener.url;
    this.ctx.facts.listeners['ws'] = `${this.listener.url.replace(/^http/, 'ws')}${WS_PATH}`;
  }

  override async stop(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    await listener?.close();
  }
}
