/** The actor base: a named address on the bus, route handlers, start/stop, and a crash signal for its supervisor. */
import type { Answer, Bus, BusTarget, RequestContext } from '../bus/bus.js';
import { TabAgentError } from '../protocol/errors.js';
import type { Log } from '../runtime/logger.js';

export type RouteHandler = (payload: any, ctx: RequestContext) => unknown;

export abstract class Actor implements BusTarget {
  private readonly handlers = new Map<string, RouteHandler>();
  private crashListener: ((err: unknown) => void) | undefined;
  private failRunning: ((err: unknown) => void) | undefined;
  private crashed: Promise<never>;

  constructor(
    readonly address: string,
    protected readonly bus: Bus,
    protected readonly log: Log,
  ) {
    this.crashed = this.armCrash();
  }

  /** Registers the handler of one route. Payloads arrive already validated by the router. */
  protected on(route: string, handler: RouteHandler): void {
    this.handlers.set(route, handler);
  }

  /** Routes this actor serves (the router checks them against the route table at start-up). */
  get routes(): string[] {
    return [...this.handlers.keys()];
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  receive(ctx: RequestContext): Answer {
    const route = ctx.envelope.body.route;
    const handler = this.handlers.get(route);
    if (!handler) throw new TabAgentError('ROUTE_NOT_FOUND', `${this.address} does not serve route '${route}'`);
    const result = handler.call(this, ctx.envelope.body.payload, ctx);
    // A crash of the actor fails the requests it was running; a fresh instance serves the queue.
    return result instanceof Promise ? Promise.race([result, this.crashed]) : result;
  }

  /** Set by the supervisor. */
  onCrash(listener: (err: unknown) => void): void {
    this.crashListener = listener;
  }

  /** Reports a fault the actor cannot recover from by itself; its supervisor restarts it. */
  protected crash(err: unknown): void {
    this.failRunning?.(err);
    this.crashListener?.(err);
  }

  private armCrash(): Promise<never> {
    const p = new Promise<never>((_, reject) => {
      this.failRunning = (err) => reject(new TabAgentError('INTERNAL_ERROR', `${this.address} crashed: ${err instanceof Error ? err.message : String(err)}`));
    });
    p.catch(() => {});
    return p;
  }
}
