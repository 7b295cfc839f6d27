/** One uWebSockets.js HTTP listener: security checks, the route table, OpenAI adapters, docs, WebSocket, and graceful close. */
import net from 'node:net';
import { TabAgentError, toTabAgentError } from '../../protocol/errors.js';
import type { RouteDef } from '../../protocol/route.js';
import type { ServerContext } from '../../server.js';
import { bindBusRoutes } from './bus-routes.js';
import type { Handler, ListenerContext, Operation } from './context.js';
import { bindDocs } from './docs.js';
import { Exchange, type ExchangeOwner } from './exchange.js';
import { bindOpenAi } from './openai/index.js';
import { LinkedSet } from '../../runtime/linked-set.js';
import { RateLimiter } from './rate-limit.js';
import { RouteTable } from './route-table.js';
import { AccessPolicy, corsHeaders, preflightHeaders } from './security.js';
import { listenerStats, newStats } from './stats.js';
import uWS, { LISTEN_EXCLUSIVE_PORT, type us_listen_socket } from './uws.js';
import { attachWebSocket, type WsEndpoint } from './websocket.js';

export interface HttpListenerOptions {
  host: string;
  port: number;
  /** Names the listener in logs, stats and the gateway's sender address (`transport.<name>`). */
  name: string;
  /** Which bus routes this listener serves over HTTP (default: every route with an http binding). */
  routeFilter?: (route: RouteDef) => boolean;
  /** Serve the OpenAI-compatible endpoints. */
  openai?: boolean;
  /** Serve the WebSocket endpoint at /v1/ws. */
  websocket?: boolean;
  /** Serve /openapi.json and /docs (default: as `openai`, and only while http.docs is on). */
  docs?: boolean;
}

export interface HttpListener {
  port: number;
  url: string;
  /** What is bound, with its docs (for the route listing). */
  operations: readonly Operation[];
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startHttpListener(ctx: ServerContext, opts: HttpListenerOptions): Promise<HttpListener> {
  const log = ctx.log.child({ transport: 'http', listener: opts.name });
  const config = (): typeof ctx.store.config => ctx.store.config;
  const app = uWS.App();
  const table = new RouteTable<Handler>();
  /** Paths whose errors OpenAI clients parse: a wrong method there answers in OpenAI's shape too. */
  const openaiPaths = new RouteTable<true>();
  const operations: Operation[] = [];
  const stats = newStats(opts.name, '');
  const policy = new AccessPolicy(config, opts.host);
  const limiter = new RateLimiter(() => config().http.rate_limit_per_minute);
  const inflight = new LinkedSet<Exchange>();
  let draining = false;

  const owner: ExchangeOwner = {
    finished(ex, status) {
      inflight.delete(ex);
      stats.requests_in_flight = inflight.size;
      stats.responses_by_status[status] = (stats.responses_by_status[status] ?? 0) + 1;
      const fields = { request_id: ex.requestId, method: ex.method, path: ex.path, status, ms: Math.round((performance.now() - ex.startedAt) * 10) / 10 };
      if (status >= 500) log.warn('http request failed', fields);
      else log.debug('http request', fields);
    },
    disconnected(ex) {
      inflight.delete(ex);
      stats.requests_in_flight = inflight.size;
      stats.cancelled_by_disconnect++;
      log.info('client disconnected; its request is cancelled', { request_id: ex.requestId, method: ex.method, path: ex.path });
    },
  };

  const lc: ListenerContext = {
    name: opts.name,
    gateway: ctx.gateway(`transport.${opts.name}`),
    log,
    stats,
    config,
    operations,
    bind(method, path, handler, doc) {
      if (!table.add(method, path, handler)) return false;
      if (doc.openaiErrors) openaiPaths.add('*', path, true);
      operations.push({ method, path, doc });
      return true;
    },
  };

  if (opts.openai) bindOpenAi(lc, ctx.facts.startedAt);
  if ((opts.docs ?? opts.openai ?? false) && config().http.docs) bindDocs(lc);
  bindBusRoutes(lc, ctx.routes.filter((r) => (opts.routeFilter ? opts.routeFilter(r) : true)));
  const ws: WsEndpoint | undefined = opts.websocket ? attachWebSocket(app, lc, policy, limiter, () => draining) : undefined;

  app.any('/*', (res, req) => {
    const ex = new Exchange(res, req, owner);
    stats.requests_total++;
    inflight.add(ex);
    stats.requests_in_flight = inflight.size;
    if (draining) return ex.fail(new TabAgentError('UNAVAILABLE', 'the server is shutting down'), [['Connection', 'close']]);
    const hostErr = policy.checkHost(ex.host);
    if (hostErr) return ex.fail(hostErr);
    if (ex.origin) {
      const originErr = policy.checkOrigin(ex.origin, ex.host);
      if (originErr) return ex.fail(originErr);
      ex.headers = corsHeaders(ex.origin);
    }
    if (ex.badRequestId !== undefined) {
      return ex.fail(new TabAgentError('BAD_REQUEST', 'X-Request-Id must be 1 to 128 visible ASCII characters', { header: 'X-Request-Id' }));
    }
    if (ex.method === 'OPTIONS') return options(ex);
    const limited = limiter.check(() => ex.remoteAddress);
    if (limited) return ex.fail(limited);
    const found = table.lookup(ex.method, ex.path);
    if (found.kind === 'found') {
      try {
        found.match.handler(ex, found.match.params);
      } catch (err) {
        ex.fail(toTabAgentError(err));
      }
      return;
    }
    if (found.kind === 'method') {
      if (openaiPaths.lookup('*', ex.path).kind === 'found') ex.errorStyle = 'openai';
      const allow = [...found.allowed, 'OPTIONS'].join(', ');
      return ex.fail(new TabAgentError('METHOD_NOT_ALLOWED', `${ex.method} is not allowed on ${ex.path}; allowed: ${allow}`, { allowed: found.allowed }), [['Allow', allow]]);
    }
    ex.fail(new TabAgentError('ROUTE_NOT_FOUND', `no endpoint ${ex.method} ${ex.path}; GET /v1/routes lists them`, { method: ex.method, path: ex.path }));
  });

  const options = (ex: Exchange): void => {
    const methods = table.methodsOf(ex.path);
    if (methods.length === 0) return ex.fail(new TabAgentError('ROUTE_NOT_FOUND', `no endpoint at ${ex.path}; GET /v1/routes lists them`));
    const allow = [...methods, 'OPTIONS'].join(', ');
    const extra: [string, string][] = [['Allow', allow]];
    if (ex.origin && ex.preflight?.method) extra.push(...preflightHeaders([...methods, 'OPTIONS'], ex.preflight.headers, ex.preflight.privateNetwork));
    ex.send(204, 'text/plain', '', extra);
  };

  // The (host, port, options, cb) form exists in the addon though its typings omit it.
  const listen = app.listen as unknown as (host: string, port: number, options: number, cb: (t: us_listen_socket | false) => void) => void;
  const token = await new Promise<us_listen_socket | false>((resolve) => listen.call(app, opts.host, opts.port, LISTEN_EXCLUSIVE_PORT, resolve));
  if (!token) {
    app.close();
    throw await listenError(opts.host, opts.port);
  }
  const port = uWS.us_socket_local_port(token);
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  stats.url = url;
  listenerStats.set(opts.name, stats);
  log.info('http listening', { url, routes: operations.length, websocket: !!ws });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      uWS.us_listen_socket_close(token);
      const until = Date.now() + config().shutdown.drain_timeout_ms;
      while ((inflight.size > 0 || (ws?.inFlight ?? 0) > 0) && Date.now() < until) await sleep(10);
      if (inflight.size > 0 || (ws?.inFlight ?? 0) > 0) {
        log.warn('drain timeout: cancelling requests still running', { http: inflight.size, websocket: ws?.inFlight ?? 0 });
        for (const ex of inflight.toArray()) ex.cancel.abort(new TabAgentError('CANCELLED', 'the server is shutting down'));
        ws?.cancelAll();
        // A cancelled generation still answers (with what it produced): give those answers a moment to go out.
        const grace = Date.now() + 1000;
        while (inflight.size > 0 && Date.now() < grace) await sleep(10);
      }
      ws?.closeAll();
      app.close();
      listenerStats.delete(opts.name);
      log.info('http closed', { url });
    })();
    return closing;
  };
  return { port, url, operations, close };
}

/** uWS only says "no": ask the OS what is wrong with that address, so the error names the real cause. */
async function listenError(host: string, port: number): Promise<TabAgentError> {
  const code = await new Promise<string | undefined>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'UNKNOWN'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
  const where = `port ${port} on ${host}`;
  const details = { host, port, reason: code ?? 'UNKNOWN' };
  switch (code) {
    case 'EADDRINUSE':
      return new TabAgentError('IO_ERROR', `${where} is already in use (another server is listening there); choose another with --port`, details);
    case 'EADDRNOTAVAIL':
      return new TabAgentError('IO_ERROR', `cannot listen on ${where}: ${host} is not an address of this machine`, details);
    case 'EACCES':
      return new TabAgentError('IO_ERROR', `cannot listen on ${where}: permission denied (ports below 1024 need privileges)`, details);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new TabAgentError('IO_ERROR', `cannot listen on ${where}: host name ${host} does not resolve`, details);
    default:
      return new TabAgentError('IO_ERROR', `cannot listen on ${where}${code ? ` (${code})` : ''}`, details);
  }
}
