/** The router actor: every carrier's requests arrive here, are validated once against the route table, and go to their owner. */
import * as v from 'valibot';
import { Addresses } from '../bus/addresses.js';
import { Forward, type Bus, type RequestContext } from '../bus/bus.js';
import { validationError } from '../protocol/contract.js';
import { TabAgentError } from '../protocol/errors.js';
import type { RouteDef } from '../protocol/route.js';
import type { Log } from '../runtime/logger.js';
import { Actor } from './actor.js';

export class RouterActor extends Actor {
  private readonly table: Map<string, RouteDef>;
  /** Envelope ids of in-flight requests by client request id, so stop_generation can reach them from any carrier. */
  private readonly inflight = new Map<string, string | string[]>();

  constructor(bus: Bus, log: Log, routes: readonly RouteDef[]) {
    super(Addresses.router, bus, log);
    this.table = new Map(routes.map((r) => [r.name, r]));
  }

  /** Route names, for errors and `GET /v1/routes`. */
  get routeNames(): string[] {
    return [...this.table.keys()].sort();
  }

  override receive(ctx: RequestContext): Promise<unknown> | Forward {
    const { route, payload, requestId } = ctx.envelope.body;
    const def = this.table.get(route);
    if (!def) {
      return Promise.reject(new TabAgentError('ROUTE_NOT_FOUND', `unknown route '${route}'`, { route, available: this.routeNames }));
    }
    const parsed = v.safeParse(def.input, payload ?? undefined);
    if (!parsed.success) return Promise.reject(validationError(parsed.issues, `payload of '${route}'`));
    if (def.owner === Addresses.router) return Promise.resolve(this.serve(route, parsed.output));
    if (!this.bus.has(def.owner)) {
      return Promise.reject(new TabAgentError('UNAVAILABLE', `route '${route}' is not served in this mode (its actor '${def.owner}' is not running)`));
    }
    return this.forward(ctx.envelope.id, def, parsed.output, requestId);
  }

  /** Hands the request itself to its owner (same envelope id): stop_generation, a carrier's cancel and the deadline all reach it. */
  private forward(envId: string, def: RouteDef, payload: unknown, requestId: string): Forward {
    // one request per id is the rule (carriers refuse duplicates); a list only when carriers reuse an id
    const ids = this.inflight.get(requestId);
    if (ids === undefined) this.inflight.set(requestId, envId);
    else this.inflight.set(requestId, typeof ids === 'string' ? [ids, envId] : [...ids, envId]);
    const done = (): void => {
      const ids = this.inflight.get(requestId);
      if (typeof ids === 'string' || ids === undefined) {
        if (ids === envId) this.inflight.delete(requestId);
        return;
      }
      const left = ids.filter((id) => id !== envId);
      if (left.length === 0) this.inflight.delete(requestId);
      else this.inflight.set(requestId, left.length === 1 ? left[0]! : left);
    };
    return new Forward(def.owner, { route: def.name, payload, requestId }, done);
  }

  private serve(route: string, payload: unknown): unknown {
    if (route === 'stop_generation') {
      const target = (payload as { request_id: string }).request_id;
      const ids = this.inflight.get(target);
      if (!ids) return { request_id: target, stopped: false };
      for (const id of typeof ids === 'string' ? [ids] : ids) this.bus.cancel(id, new TabAgentError('CANCELLED', 'stopped by stop_generation'));
      return { request_id: target, stopped: true };
    }
    throw new TabAgentError('ROUTE_NOT_FOUND', `the router does not serve '${route}'`);
  }
}
