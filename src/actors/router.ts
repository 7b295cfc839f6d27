/** The router actor: every carrier's requests arrive here, are validated once against the route table, and go to their owner. */
import * as v from 'valibot';
import { Addresses } from '../bus/addresses.js';
import { Forward, type Answer, type Bus, type RequestContext } from '../bus/bus.js';
import { validationError } from '../protocol/contract.js';
import { TabAgentError } from '../protocol/errors.js';
import type { RouteDef } from '../protocol/route.js';
import type { Log } from '../runtime/logger.js';
import { Actor } from './actor.js';

export class RouterActor extends Actor {
  private readonly table: Map<string, RouteDef>;

  constructor(bus: Bus, log: Log, routes: readonly RouteDef[]) {
    super(Addresses.router, bus, log);
    this.table = new Map(routes.map((r) => [r.name, r]));
  }

  /** Route names, for errors and `GET /v1/routes`. */
  get routeNames(): string[] {
    return [...this.table.keys()].sort();
  }

  override receive(ctx: RequestContext): Answer {
    const { route, payload, requestId } = ctx.envelope.body;
    const def = this.table.get(route);
    if (!def) throw new TabAgentError('ROUTE_NOT_FOUND', `unknown route '${route}'`, { route, available: this.routeNames });
    const parsed = v.safeParse(def.input, payload ?? undefined);
    if (!parsed.success) throw validationError(parsed.issues, `payload of '${route}'`);
    if (def.owner === Addresses.router) return this.serve(route, parsed.output);
    if (!this.bus.has(def.owner)) {
      throw new TabAgentError('UNAVAILABLE', `route '${route}' is not served in this mode (its actor '${def.owner}' is not running)`);
    }
    // The request itself goes on (same envelope id): a carrier's cancel, stop_generation and the deadline all reach the owner.
    return new Forward(def.owner, { route: def.name, payload: parsed.output, requestId });
  }

  private serve(route: string, payload: unknown): unknown {
    if (route === 'stop_generation') {
      const target = (payload as { request_id: string }).request_id;
      // Every carrier's requests pass here, so this finds the id whichever carrier sent it (all of them, if several reuse it).
      const stopped = this.bus.cancelWhere((env) => env.from === Addresses.router && env.body.requestId === target, new TabAgentError('CANCELLED', 'stopped by stop_generation'));
      return { request_id: target, stopped: stopped > 0 };
    }
    throw new TabAgentError('ROUTE_NOT_FOUND', `the router does not serve '${route}'`);
  }
}
