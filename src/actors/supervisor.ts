/** The supervisor: starts actors, restarts a crashed one with exponential backoff, stops them in reverse order. */
import type { Bus, AddressOptions } from '../bus/bus.js';
import type { Log } from '../runtime/logger.js';
import type { Actor } from './actor.js';

export interface ActorSpec extends AddressOptions {
  address: string;
  create: () => Actor;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A run this long without a crash resets the backoff. */
  resetAfterMs: number;
}

interface Child {
  spec: ActorSpec;
  actor: Actor;
  restarts: number;
  delayMs: number;
  startedAt: number;
  timer?: NodeJS.Timeout;
}

export class Supervisor {
  private readonly children = new Map<string, Child>();
  private stopping = false;

  constructor(
    private readonly bus: Bus,
    private readonly log: Log,
    private readonly backoff: BackoffPolicy = { initialMs: 100, maxMs: 10_000, resetAfterMs: 60_000 },
  ) {}

  async spawn(spec: ActorSpec): Promise<Actor> {
    this.bus.open(spec.address, spec);
    const actor = spec.create();
    const child: Child = { spec, actor, restarts: 0, delayMs: this.backoff.initialMs, startedAt: Date.now() };
    this.children.set(spec.address, child);
    await this.startChild(child, actor);
    return actor;
  }

  get(address: string): Actor | undefined {
    return this.children.get(address)?.actor;
  }

  restarts(address: string): number {
    return this.children.get(address)?.restarts ?? 0;
  }

  /** Stops every actor, last started first, so transports close before what they depend on. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const child of [...this.children.values()].reverse()) {
      if (child.timer) clearTimeout(child.timer);
      this.bus.attach(child.spec.address, undefined);
      try {
        await child.actor.stop();
      } catch (err) {
        this.log.warn('actor failed to stop cleanly', { actor: child.spec.address, err });
      }
      this.bus.close(child.spec.address);
    }
    this.children.clear();
  }

  private async startChild(child: Child, actor: Actor): Promise<void> {
    child.actor = actor;
    actor.onCrash((err) => this.restart(child, actor, err));
    await actor.start();
    child.startedAt = Date.now();
    this.bus.attach(child.spec.address, actor);
  }

  private restart(child: Child, crashed: Actor, err: unknown): void {
    if (this.stopping || child.actor !== crashed || child.timer) return;
    // Requests keep queueing in the address's mailbox while no instance is attached.
    this.bus.attach(child.spec.address, undefined);
    if (Date.now() - child.startedAt > this.backoff.resetAfterMs) child.delayMs = this.backoff.initialMs;
    const delay = child.delayMs;
    child.delayMs = Math.min(child.delayMs * 2, this.backoff.maxMs);
    child.restarts++;
    this.log.error('actor crashed; restarting', { actor: child.spec.address, err, restart: child.restarts, in_ms: delay });
    crashed.stop().catch(() => {});
    child.timer = setTimeout(() => {
      delete child.timer;
      if (this.stopping) return;
      const fresh = child.spec.create();
      this.startChild(child, fresh).then(
        () => this.log.info('actor restarted', { actor: child.spec.address, restart: child.restarts }),
        (startErr: unknown) => this.restart(child, fresh, startErr),
      );
    }, delay);
  }
}
