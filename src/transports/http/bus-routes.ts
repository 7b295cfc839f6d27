/** The generic HTTP binding of bus routes: every `http: [{method, path}]` of the route table becomes a handler here. */
import type * as v from 'valibot';
import { toTabAgentError } from '../../protocol/errors.js';
import type { RouteDef } from '../../protocol/route.js';
import type { CallOptions } from '../gateway.js';
import type { Handler, ListenerContext } from './context.js';
import { problemBody } from './errors.js';
import type { Exchange } from './exchange.js';
import { objectEntries, payloadBuilder, type PayloadParts } from './payload.js';
import { SseStream } from './sse.js';

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** A chunk that is only a piece of text (`{delta}`) can merge with its neighbours while a reader is slow. */
export function deltaOf(chunk: unknown): string | undefined {
  if (typeof chunk !== 'object' || chunk === null) return undefined;
  const keys = Object.keys(chunk);
  const d = (chunk as { delta?: unknown }).delta;
  return keys.length === 1 && typeof d === 'string' ? d : undefined;
}

export function bindBusRoutes(lc: ListenerContext, routes: readonly RouteDef[]): void {
  for (const route of routes) {
    route.http?.forEach((b, i) => {
      const entries = objectEntries(route.input);
      const query = entries && !BODY_METHODS.has(b.method) ? withoutCarrierFields(entries, b.path) : undefined;
      const doc: Parameters<ListenerContext['bind']>[3] = {
        operationId: i === 0 ? route.name : `${route.name}_${i}`,
        summary: route.summary,
        tags: [route.owner],
        route: route.name,
      };
      if (BODY_METHODS.has(b.method)) doc.body = route.input;
      if (query) doc.query = query;
      if (route.output) doc.response = route.output;
      if (route.streaming) doc.streaming = true;
      if (!lc.bind(b.method, b.path, busHandler(lc, route, b.method), doc)) {
        lc.log.warn('http binding already taken; keeping the first', { route: route.name, method: b.method, path: b.path });
      }
    });
  }
}

function withoutCarrierFields(entries: Record<string, v.GenericSchema>, path: string): Record<string, v.GenericSchema> {
  const out: Record<string, v.GenericSchema> = {};
  for (const [k, s] of Object.entries(entries)) if (k !== '_remote_address' && !path.includes(`{${k}}`)) out[k] = s;
  return out;
}

function busHandler(lc: ListenerContext, route: RouteDef, method: string): Handler {
  const hasBody = BODY_METHODS.has(method);
  const build = payloadBuilder(route);
  return (ex, params) => {
    if (!hasBody) return call(lc, route, build, ex, params, undefined);
    ex.readBody(lc.config().http.body_limit_bytes).then(
      (body) => call(lc, route, build, ex, params, body),
      (err: unknown) => ex.fail(toTabAgentError(err)),
    );
  };
}

function call(
  lc: ListenerContext,
  route: RouteDef,
  build: (parts: PayloadParts) => unknown,
  ex: Exchange,
  params: Readonly<Record<string, string>>,
  body: Buffer | undefined,
): void {
  let payload: unknown;
  try {
    payload = build({ method: ex.method, params, query: ex.query, body, remoteAddress: () => ex.remoteAddress });
  } catch (err) {
    ex.fail(toTabAgentError(err));
    return;
  }
  // the gateway applies the route's default priority
  const opts: CallOptions = { signal: ex.signal };
  if (route.streaming && (payload as { stream?: unknown } | undefined)?.stream === true) return stream(lc, route, ex, payload, opts);
  lc.gateway.call(route.name, payload, ex.requestId, opts).then(
    (data) => ex.json(200, data ?? null),
    (err: unknown) => ex.fail(toTabAgentError(err)),
  );
}

const renderDelta = (text: string): string => `event: chunk\ndata: ${JSON.stringify({ delta: text })}\n\n`;

/**
 * `stream: true` on a streaming route: chunk frames become `event: chunk` events and the final reply
 * an `event: result` event. The head is written with the first chunk, so a request that fails before
 * producing anything still gets a plain error status.
 */
function stream(lc: ListenerContext, route: RouteDef, ex: Exchange, payload: unknown, opts: CallOptions): void {
  const sse = new SseStream(ex, lc.stats, lc.config().http.stream_max_pending_bytes, () => ex.abortConnection());
  let opened = false;
  const openOnce = (): void => {
    if (!opened) sse.open();
    opened = true;
  };
  opts.onChunk = (chunk) => {
    openOnce();
    const d = deltaOf(chunk);
    if (d !== undefined) sse.delta(d, renderDelta);
    else sse.event(`event: chunk\ndata: ${JSON.stringify(chunk)}\n\n`);
  };
  lc.gateway.call(route.name, payload, ex.requestId, opts).then(
    (data) => {
      if (ex.aborted) return sse.abandon();
      openOnce();
      sse.end(`event: result\ndata: ${JSON.stringify(data ?? null)}\n\n`);
    },
    (err: unknown) => {
      const e = toTabAgentError(err);
      if (ex.aborted) return sse.abandon();
      if (!opened) return ex.fail(e);
      sse.end(`event: error\ndata: ${JSON.stringify(problemBody(e, ex.requestId, ex.path))}\n\n`);
    },
  );
}
