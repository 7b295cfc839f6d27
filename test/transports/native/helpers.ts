/** Test helpers for native messaging: a background server, and hosts spawned with pipes as a browser does. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FrameDecoder, frameText } from '../../../src/transports/native/frame-codec.js';
import { connectIpc, isLive } from '../../../src/transports/native/ipc.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
export const cliPath = path.join(root, 'dist/src/cli.js');
export const hostMain = path.join(root, 'dist/src/transports/native/host-main.js');

export function tempDir(prefix = 'tabagent-native-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Every process a test starts, and every server a relay started detached (pid from the relay's stderr), is
 * listed in a file that a watchdog shell reads once this test process is gone, however it ended (tap kills
 * a timed-out test with a signal, which skips teardowns and 'exit' handlers): nothing is left running.
 */
const started = new Set<number>();
/** Detached servers already taken from a relay's stderr (its whole stderr is searched on every chunk). */
const announced = new Set<number>();
let pidFile: string | undefined;
function track(pid: number | undefined, add: boolean): void {
  if (pid === undefined) return;
  if (add) started.add(pid);
  else started.delete(pid);
  if (!pidFile) {
    pidFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'tabagent-native-pids-')), 'pids');
    const watchdog = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 $(cat '${pidFile}') 2>/dev/null; rm -rf '${path.dirname(pidFile)}'`;
    spawn('sh', ['-c', watchdog], { detached: true, stdio: 'ignore' }).unref();
  }
  writeFileSync(pidFile, [...started].join(' '));
}

/** Environment for every process a test starts: quiet logs, no ports, native only, one inference worker (each one loads the model). */
export function testEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, TABAGENT_LOG_LEVEL: 'warn', TABAGENT_MODE: 'native', TABAGENT_PORT: '0', TABAGENT_WEBRTC_PORT: '0', TABAGENT_INFERENCE__WORKERS: '1', ...extra };
}

export interface BackgroundServer {
  child: ChildProcess;
  socket: string;
  stderr(): string;
  stop(): Promise<number | null>;
}

/** Starts `serve --mode native --no-stdio` (what a relay would start) and waits for its IPC socket. */
export async function startServer(dataDir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<BackgroundServer> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--mode', 'native', '--no-stdio', '--data-dir', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: testEnv(env) });
  track(child.pid, true);
  child.on('exit', () => track(child.pid, false));
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const socket = path.join(dataDir, 'tabagent.sock');
  const until = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${err}`);
    if (await isLive(socket)) break;
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`server did not listen on ${socket}: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    socket,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      if (out.length) throw new Error(`the server wrote to stdout: ${JSON.stringify(out.slice(0, 200))}`);
      return code;
    },
  };
}

/**
 * A host process driven with raw bytes. Every byte it writes to stdout must decode as frames: `frames`
 * holds them, and `strayBytes` any bytes left over or undecodable (a test asserts it stays 0).
 */
export class RawHost {
  readonly child: ChildProcess;
  readonly frames: any[] = [];
  stderr = '';
  stdoutBytes = 0;
  decodeErrors: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly decoder = new FrameDecoder(2 * 1024 * 1024);
  private waiters: (() => void)[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}, command: string[] = [hostMain]) {
    this.child = spawn(process.execPath, [...command, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: testEnv(env) });
    track(this.child.pid, true);
    this.child.on('exit', () => track(this.child.pid, false));
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.stdoutBytes += chunk.length;
      for (const item of this.decoder.push(chunk)) {
        if (item.ok) this.frames.push(item.value);
        else this.decodeErrors.push(item.error.message);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      for (const m of this.stderr.matchAll(/started the server \(pid (\d+)\)/g)) {
        if (!announced.has(Number(m[1]))) track(Number(m[1]), true);
        announced.add(Number(m[1]));
      }
    });
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => {
      for (const w of this.waiters.splice(0)) w();
      resolve(code);
    }));
  }

  /** Bytes of stdout that were not whole, valid frames. */
  get strayBytes(): number {
    return this.decoder.pending + this.decodeErrors.length;
  }

  write(bytes: Buffer): void {
    this.child.stdin!.write(bytes);
  }

  send(message: unknown): void {
    this.write(frameText(JSON.stringify(message)));
  }

  end(): void {
    this.child.stdin!.end();
  }

  /** Waits for a frame matching `pred` (searching frames already received too). */
  async waitFor(pred: (f: any) => boolean, timeoutMs = 60_000): Promise<any> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(pred);
      if (found) return found;
      if (this.child.exitCode !== null || Date.now() > until) throw new Error(`no matching frame; got ${JSON.stringify(this.frames).slice(0, 500)}; stderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  reply(id: string | null, timeoutMs?: number): Promise<any> {
    return this.waitFor((f) => f.request_id === id && typeof f.success === 'boolean', timeoutMs);
  }
}

/** A length prefix in native byte order. */
export function header(length: number): Buffer {
  const h = Buffer.alloc(4);
  if (os.endianness() === 'LE') h.writeUInt32LE(length);
  else h.writeUInt32BE(length);
  return h;
}

/** Asks the server listening on `socketPath` for its pid (route `system`), or null when none answers. */
async function serverPid(socketPath: string): Promise<number | null> {
  const socket = await connectIpc(socketPath).catch(() => null);
  if (!socket) return null;
  const decoder = new FrameDecoder();
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(null), 10_000);
    const finish = (pid: number | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(pid);
    };
    socket.on('data', (chunk: Buffer) => {
      for (const item of decoder.push(chunk)) {
        const frame = item.ok ? (item.value as { request_id?: string; data?: { pid?: number } }) : undefined;
        if (frame?.request_id === 'pid') finish(frame.data?.pid ?? null);
      }
    });
    socket.on('error', () => finish(null));
    socket.write(frameText(JSON.stringify({ request_id: 'pid', route: 'system' })));
  });
}

/** Whether the process exists and is not a zombie (an orphan's exit may be reaped late). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Stops the server that serves `dataDir` (one a relay started detached, which no test holds a handle to):
 * SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. Resolves with its pid, or null if none ran.
 */
export async function stopServerIn(dataDir: string, timeoutMs = 15_000): Promise<number | null> {
  const pid = await serverPid(path.join(dataDir, 'tabagent.sock'));
  if (pid === null) return null;
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > until) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  track(pid, false);
  return pid;
}

/** Pids of live processes whose command line holds every one of `parts` (Linux /proc). */
export function processesWith(...parts: string[]): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      if (parts.every((p) => cmdline.includes(p)) && isRunning(Number(name))) pids.push(Number(name));
    } catch {
      // Exited while being read.
    }
  }
  return pids;
}
