/** Routes served by the HTTP transport itself: the route listing and the listeners' counters. */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { defineRoute } from '../route.js';

const NoPayload = v.optional(v.union([v.null(), v.object({})]));

const Binding = v.object({ method: v.string(), path: v.string() });

export const routes = defineRoute({
  name: 'routes',
  owner: Addresses.httpTransport,
  summary: 'Every bus route with its HTTP bindings, and every HTTP endpoint (OpenAI adapters and docs included) with the route it serves.',
  input: NoPayload,
  output: v.object({
    routes: v.array(
      v.object({ name: v.string(), owner: v.string(), summary: v.string(), priority: v.string(), streaming: v.boolean(), http: v.array(Binding) }),
    ),
    endpoints: v.array(v.object({ method: v.string(), path: v.string(), operation: v.string(), route: v.nullable(v.string()) })),
  }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/routes' }],
});

export const httpStats = defineRoute({
  name: 'http_stats',
  owner: Addresses.httpTransport,
  summary: 'Counters of each HTTP listener: requests, responses by status, streams, backpressure, disconnect cancellations, WebSocket traffic.',
  input: NoPayload,
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/http/stats' }],
});

export const httpRoutes = [routes, httpStats];
