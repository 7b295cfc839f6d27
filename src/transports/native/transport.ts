/** The native-messaging transport actor: serves relays on the IPC socket and, when asked, frames on the process's own stdin/stdout. */
import type net from 'node:net';
import { Actor } from '../../actors/actor.js';
import { Addresses } from '../../bus/addresses.js';
import { ipcSocketPath } from '../../runtime/paths.js';
import type { ServerContext } from '../../server.js';
import { transportFactories } from '../index.js';
import { NativeConnection } from './connection.js';
import { listenIpc, type IpcListener } from './ipc.js';

export class NativeTransport extends Actor {
  private listener: IpcListener | undefined;
  private readonly connections = new Set<NativeConnection>();
  private readonly sockets = new Set<net.Socket>();
  private stdio: NativeConnection | undefined;
  private stopping = false;

  constructor(private readonly ctx: ServerContext) {
    super(Addresses.nativeTransport, ctx.bus, ctx.log.child({ actor: Addresses.nativeTransport }));
  }

  get socketPath(): string {
    const cfg = this.ctx.store.config;
    return cfg.native.socket_path || ipcSocketPath(cfg.data_dir);
  }

  override async start(): Promise<void> {
    const socketPath = this.socketPath;
    this.listener = await listenIpc(socketPath, (socket) => this.accept(socket));
    this.ctx.facts.listeners['native'] = `ipc://${socketPath}`;
    const cfg = this.ctx.store.config;
    if (cfg.native.stdio && !process.stdin.isTTY) this.serveStdio();
    this.log.info('native messaging ready', { socket: socketPath, stdio: this.stdio !== undefined });
  }

  override async stop(): Promise<void> {
    this.stopping = true;
    const drainMs = this.ctx.store.config.shutdown.drain_timeout_ms;
    const closing = this.listener?.close();
    const all = [...this.connections];
    if (this.stdio) all.push(this.stdio);
    await Promise.all(all.map((c) => c.drain(drainMs)));
    for (const s of this.sockets) s.end();
    for (const s of this.sockets) s.destroy();
    if (this.stdio) process.stdin.destroy();
    await closing;
    delete this.ctx.facts.listeners['native'];
  }

  private options(onEnded: () => void): ConstructorParameters<typeof NativeConnection>[4] {
    const cfg = this.ctx.store.config;
    return { maxMessageBytes: cfg.native.max_message_bytes, drainTimeoutMs: cfg.shutdown.drain_timeout_ms, onEnded };
  }

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const log = this.log.child({ connection: `ipc-${this.sockets.size + 1}` });
    const conn = new NativeConnection(this.ctx.gateway(Addresses.nativeTransport), socket, socket, log, this.options(() => socket.end()));
    this.connections.add(conn);
    this.sockets.add(socket);
    socket.on('close', () => {
      conn.close();
      this.connections.delete(conn);
      this.sockets.delete(socket);
    });
  }

  /** The process was started by a browser (or a test) with frames on stdin: EOF there ends the server. */
  private serveStdio(): void {
    const log = this.log.child({ connection: 'stdio' });
    this.stdio = new NativeConnection(
      this.ctx.gateway(Addresses.nativeTransport),
      process.stdin,
      process.stdout,
      log,
      this.options(() => {
        log.info('stdin closed: shutting down (use --no-stdio to keep a background server running)');
        this.ctx.requestShutdown('stdin closed');
      }),
    );
  }
}

transportFactories.native = (ctx) => new NativeTransport(ctx);
