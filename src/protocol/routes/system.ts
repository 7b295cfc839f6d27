/** System routes: liveness, readiness, process and host information. */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { defineRoute } from '../route.js';

const NoPayload = v.optional(v.union([v.null(), v.object({})]));

export const health = defineRoute({
  name: 'health',
  owner: Addresses.system,
  summary: 'Liveness: the process answers.',
  input: NoPayload,
  output: v.object({ status: v.literal('ok'), timestamp: v.string(), uptime_s: v.number(), version: v.string() }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/health' }],
});

export const ready = defineRoute({
  name: 'ready',
  owner: Addresses.system,
  summary: 'Readiness: every actor is started and the server accepts work.',
  input: NoPayload,
  output: v.object({ ready: v.boolean(), checks: v.record(v.string(), v.boolean()) }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/health/ready' }],
});

export const system = defineRoute({
  name: 'system',
  owner: Addresses.system,
  summary: 'Server version, mode, transports and host facts (cores, memory, platform).',
  input: NoPayload,
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/system/info' }],
});

export const systemRoutes = [health, ready, system];
