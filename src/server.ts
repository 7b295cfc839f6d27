/** Composes one server: the bus, the core actors, and the transports the mode asks for; and stops it gracefully. */
import type { Actor } from './actors/actor.js';
import { ModelRegistryActor } from './actors/model-registry.js';
import { RouterActor } from './actors/router.js';
import { Supervisor } from './actors/supervisor.js';
import { StorageActor } from './actors/storage.js';
import { SystemActor, type ServerFacts } from './actors/system.js';
import { Addresses } from './bus/addresses.js';
import { Bus } from './bus/bus.js';
import { allRoutes } from './protocol/routes/index.js';
import type { RouteDef } from './protocol/route.js';
import type { Config, ConfigStore, Mode } from './runtime/config.js';
import type { Log, RootLog } from './runtime/logger.js';
import { InferencePool, planThreads } from './runtime/pool/pool.js';
import { storeDir } from './runtime/storage/open.js';
import { Gateway } from './transports/gateway.js';
import { transportFactories, type TransportName } from './transports/index.js';

/** What every actor factory gets: the shared pieces of one running server. */
export interface ServerContext {
  bus: Bus;
  log: RootLog;
  store: ConfigStore;
  facts: ServerFacts;
  routes: readonly RouteDef[];
  router: RouterActor;
  /** A gateway for a transport at `from` to reach the router. */
  gateway(from: string): Gateway;
  /** Asks the whole server to shut down (stdin EOF in native mode, for example). */
  requestShutdown(reason: string): void;
}

export const transportsByMode: Record<Mode, TransportName[]> = {
  native: ['native'],
  http: ['http'],
  webrtc: ['webrtc'],
  both: ['http', 'native'],
  all: ['http', 'native', 'webrtc'],
};

export interface RunningServer {
  context: ServerContext;
  supervisor: Supervisor;
  /** Resolves when the server has stopped (by stop() or requestShutdown). */
  stopped: Promise<void>;
  stop(reason?: string): Promise<void>;
}

export interface CoreActorFactory {
  address: string;
  create: (ctx: ServerContext) => Actor;
  mailboxCapacity?: number;
  concurrency?: number;
}

/** Actors every mode runs besides the system actor and the router: conversation storage and the model registry. */
export function coreActorFactories(config: Config): CoreActorFactory[] {
  return [
    {
      address: Addresses.storage,
      create: (ctx) =>
        new StorageActor(ctx.bus, ctx.log.child({ actor: Addresses.storage }), {
          dir: storeDir(config.data_dir),
          sync: config.storage.sync,
          maxMessageBytes: config.storage.max_message_bytes,
        }),
    },
    {
      address: Addresses.models,
      create: (ctx) => {
        const log = ctx.log.child({ actor: Addresses.models });
        return new ModelRegistryActor(ctx.bus, log, {
          inference: config.inference,
          modelsDir: config.models_dir,
          models: config.models,
          createBackend: () => createInferencePool(config, log),
        });
      },
    },
  ];
}

/** The worker pool as the config and the cores allow (see planThreads and docs/tuning.md). */
export function createInferencePool(config: Config, log: Log): InferencePool {
  const inf = config.inference;
  const plan = planThreads(inf);
  if (plan.oversubscribed) log.warn('inference workers x threads exceed the cores: expect a large slowdown', { ...plan });
  return new InferencePool({
    workers: plan.workers,
    threads: plan.threads,
    contextSize: inf.context_size,
    maxSequences: inf.max_sequences,
    contexts: inf.contexts,
    placement: inf.placement,
    queueLimits: { interactive: inf.queue_limit_interactive, normal: inf.queue_limit_normal, background: inf.queue_limit_background },
    agingMs: inf.aging_ms,
    log,
    logLevel: config.log_level,
  });
}

export interface StartOptions {
  /** Core actors to use instead of the defaults with the same address (tests inject stand-ins this way). */
  replaceActors?: CoreActorFactory[];
}

export async function startServer(store: ConfigStore, log: RootLog, opts: StartOptions = {}): Promise<RunningServer> {
  const config = store.config;
  const replaced = new Map((opts.replaceActors ?? []).map((f) => [f.address, f]));
  const coreActors = coreActorFactories(config).map((f) => replaced.get(f.address) ?? f);
  const bus = new Bus();
  const supervisor = new Supervisor(bus, log.child({ actor: 'supervisor' }));
  const facts: ServerFacts = { mode: config.mode, startedAt: Date.now(), listeners: {}, checks: { started: false } };
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | undefined;

  const router = new RouterActor(bus, log.child({ actor: Addresses.router }), allRoutes);
  const routePriority = new Map(allRoutes.flatMap((r) => (r.priority ? [[r.name, r.priority] as const] : [])));
  const context: ServerContext = {
    bus,
    log,
    store,
    facts,
    routes: allRoutes,
    router,
    gateway: (from) => new Gateway(bus, from, config.bus.request_timeout_ms || undefined, (route) => routePriority.get(route)),
    requestShutdown: (reason) => void stop(reason),
  };

  const stop = (reason = 'stop requested'): Promise<void> => {
    if (stopping) return stopping;
    facts.checks['started'] = false;
    log.info('shutting down', { reason, drain_timeout_ms: config.shutdown.drain_timeout_ms });
    stopping = supervisor.stopAll().then(() => {
      log.info('stopped');
      resolveStopped();
    });
    return stopping;
  };

  const mailbox = config.bus.mailbox_capacity;
  try {
    await supervisor.spawn({ address: Addresses.system, create: () => new SystemActor(bus, log.child({ actor: Addresses.system }), facts), mailboxCapacity: mailbox });
    for (const f of coreActors) {
      await supervisor.spawn({ address: f.address, create: () => f.create(context), mailboxCapacity: f.mailboxCapacity ?? mailbox, concurrency: f.concurrency ?? 1024 });
    }
    await supervisor.spawn({ address: Addresses.router, create: () => router, mailboxCapacity: mailbox, concurrency: mailbox });
    for (const name of transportsByMode[config.mode]) {
      const factory = transportFactories[name];
      if (!factory) throw new Error(`transport '${name}' is not available in this build`);
      const address = `transport.${name}`;
      await supervisor.spawn({ address, create: () => factory(context), mailboxCapacity: 64, concurrency: 64 });
    }
  } catch (err) {
    await supervisor.stopAll().catch(() => {});
    throw err;
  }
  facts.checks['started'] = true;
  log.info('server started', { mode: config.mode, listeners: facts.listeners });
  return { context, supervisor, stopped, stop };
}
