/**
 * The native-messaging host a browser spawns: checks the caller, connects to the long-running server's
 * IPC socket (starting the server if none runs) and relays frame bytes both ways untouched.
 * Its import graph is kept tiny on purpose (node built-ins and the frame codec): a browser spawns one per
 * port and per sendNativeMessage call, so its start-up time is every request's latency.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ErrorCode } from '../../protocol/errors.js';
import { ipcSocketPath } from '../../runtime/paths.js';
import { encodeFrame } from './frame-codec.js';
import { connectIpc } from './ipc.js';

export interface RelayArgs {
  dataDir?: string;
  socket?: string;
  config?: string;
  /** Extension ids the host was installed for (baked into the launcher by install-native-host). */
  allow: string[];
  /** What the browser passed: Chrome `chrome-extension://<id>/` (+ `--parent-window=N` on Windows); Firefox the manifest path and the extension id. */
  caller: string[];
}

export function parseRelayArgs(argv: readonly string[]): RelayArgs {
  const out: RelayArgs = { allow: [], caller: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${a} needs a value`);
      return next;
    };
    if (a === '--data-dir') out.dataDir = value();
    else if (a === '--socket') out.socket = value();
    else if (a === '--config') out.config = value();
    else if (a === '--allow-extension') out.allow.push(value());
    else if (a.startsWith('--parent-window=')) continue;
    else out.caller.push(a);
  }
  return out;
}

export type Caller = { browser: 'chrome' | 'firefox'; id: string } | { browser: 'none' } | { browser: 'unknown'; args: string[] };

/** Who started the host, from the browser's arguments. */
export function callerOf(args: readonly string[]): Caller {
  if (args.length === 0) return { browser: 'none' };
  const m = /^chrome-extension:\/\/([^/]+)\/?$/.exec(args[0]!);
  if (m) return { browser: 'chrome', id: m[1]! };
  if (args.length === 2 && args[0]!.endsWith('.json')) return { browser: 'firefox', id: args[1]! };
  return { browser: 'unknown', args: [...args] };
}

/** Writes one error frame (request_id null: it answers no particular request) straight to stdout. */
function writeError(code: ErrorCode, message: string, details?: unknown): void {
  const error = details === undefined ? { code, message } : { code, message, details };
  const frame = encodeFrame({ request_id: null, success: false, error });
  let off = 0;
  while (off < frame.length) {
    try {
      off += writeSync(1, frame, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      return;
    }
  }
}

function note(message: string): void {
  process.stderr.write(`tabagent native-host: ${message}\n`);
}

type LoadedConfig = import('../../runtime/config.js').Config;
let loaded: LoadedConfig | undefined;
/** The full config loader is only imported on slow paths (no data dir given, an id not baked in, starting the server). */
async function fullConfig(args: RelayArgs): Promise<LoadedConfig> {
  if (loaded) return loaded;
  const { loadConfig } = await import('../../runtime/config.js');
  const opts: import('../../runtime/config.js').LoadOptions = { flags: { data_dir: args.dataDir, 'native.socket_path': args.socket } };
  if (args.config) opts.file = args.config;
  loaded = loadConfig(opts).config;
  return loaded;
}

const originMatches = (allowed: string, id: string): boolean => allowed === id || allowed === `chrome-extension://${id}/` || allowed === `chrome-extension://${id}`;

async function checkCaller(args: RelayArgs): Promise<{ ok: true } | { ok: false; message: string }> {
  const caller = callerOf(args.caller);
  if (caller.browser === 'none') return { ok: true };
  if (caller.browser === 'unknown') return { ok: false, message: `unrecognised caller arguments ${JSON.stringify(caller.args)}: expected chrome-extension://<id>/ (Chrome) or <manifest path> <extension id> (Firefox)` };
  if (args.allow.some((a) => originMatches(a, caller.id))) return { ok: true };
  const config = await fullConfig(args);
  if (config.extension_ids.some((a) => originMatches(a, caller.id))) return { ok: true };
  return { ok: false, message: `extension '${caller.id}' is not allowed: add it to extension_ids in the config, or reinstall the host with --extension-id ${caller.id}` };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Modes that run the native transport (and so listen on the IPC socket). */
function modeWithNative(mode: string): string {
  if (mode === 'http') return 'both';
  if (mode === 'webrtc') return 'all';
  return mode;
}

function logTail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Starts `tabagent serve --no-stdio` detached (logs to <data_dir>/tabagent-server.log) unless another
 * relay is already starting one (a lock file), then waits until the socket accepts a connection.
 */
async function startServerAndConnect(args: RelayArgs, socketPath: string): Promise<net.Socket> {
  const config = await fullConfig(args);
  const dataDir = config.data_dir;
  mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(dataDir, 'tabagent-server.log');
  const lockFile = path.join(dataDir, 'tabagent-server.start.lock');
  const timeoutMs = config.native.server_start_timeout_ms;
  let owner = false;
  try {
    closeSync(openSync(lockFile, 'wx'));
    owner = true;
  } catch {
    try {
      if (Date.now() - statSync(lockFile).mtimeMs > timeoutMs) {
        unlinkSync(lockFile);
        closeSync(openSync(lockFile, 'wx'));
        owner = true;
      }
    } catch {
      // Another relay holds a fresh lock: it starts the server, this one only waits.
    }
  }
  let exited: number | null | undefined;
  try {
    if (owner) {
      const cli = fileURLToPath(new URL('../../cli.js', import.meta.url));
      const argv = [cli, 'serve', '--no-stdio', '--mode', modeWithNative(config.mode), '--data-dir', dataDir];
      if (args.config) argv.push('--config', args.config);
      const log = openSync(logFile, 'a');
      const child = spawn(process.execPath, argv, {
        detached: true,
        stdio: ['ignore', 'ignore', log],
        env: { ...process.env, TABAGENT_NATIVE__SOCKET_PATH: socketPath },
      });
      closeSync(log);
      child.on('exit', (code) => (exited = code));
      child.on('error', () => (exited = -1));
      child.unref();
      note(`started the server (pid ${child.pid}), log: ${logFile}`);
    }
    const until = Date.now() + timeoutMs;
    let graceUntil = Infinity;
    for (;;) {
      try {
        return await connectIpc(socketPath);
      } catch {
        // Not up yet.
      }
      // A server that exited may have lost a race to another one: give that one a moment.
      if (exited !== undefined && graceUntil === Infinity) graceUntil = Date.now() + 500;
      if (Date.now() > Math.min(until, graceUntil)) break;
      await sleep(20);
    }
    const why = exited !== undefined ? `it exited with code ${exited}` : `it did not accept connections within ${timeoutMs} ms`;
    const tail = logTail(logFile);
    throw new Error(`could not start the TabAgent server (${why}); log: ${logFile}${tail ? `\n${tail}` : ''}`);
  } finally {
    if (owner) {
      try {
        unlinkSync(lockFile);
      } catch {
        // Already removed.
      }
    }
  }
}

/** Runs the relay until the browser closes stdin and the server has answered everything; resolves with the exit code. */
export async function runRelay(argv: readonly string[]): Promise<number> {
  let args: RelayArgs;
  try {
    args = parseRelayArgs(argv);
  } catch (err) {
    writeError('BAD_REQUEST', (err as Error).message);
    return 1;
  }
  try {
    const check = await checkCaller(args);
    if (!check.ok) {
      note(check.message);
      writeError('AUTH_ERROR', check.message);
      return 1;
    }
  } catch (err) {
    writeError('INTERNAL_ERROR', `cannot check the caller: ${(err as Error).message}`);
    return 1;
  }

  let socketPath: string;
  try {
    socketPath = args.socket ?? (args.dataDir ? ipcSocketPath(args.dataDir) : (await fullConfig(args)).native.socket_path || ipcSocketPath((await fullConfig(args)).data_dir));
  } catch (err) {
    writeError('VALIDATION_ERROR', (err as Error).message);
    return 1;
  }

  let terminated = false;
  const onEarlySignal = (): void => {
    terminated = true;
  };
  process.once('SIGTERM', onEarlySignal);
  let socket: net.Socket;
  try {
    socket = await connectIpc(socketPath).catch(() => startServerAndConnect(args, socketPath));
  } catch (err) {
    note((err as Error).message);
    writeError('UNAVAILABLE', (err as Error).message, { socket: socketPath });
    return 1;
  }
  process.off('SIGTERM', onEarlySignal);
  if (terminated) {
    socket.destroy();
    return 0;
  }
  return relay(socket);
}

/** Pipes stdin to the socket and the socket to stdout, byte for byte; the server does the framing. */
function relay(socket: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    let inputEnded = false;
    const stdin = process.stdin;
    const stdout = process.stdout;
    const endInput = (): void => {
      if (inputEnded) return;
      inputEnded = true;
      stdin.unpipe(socket);
      socket.end();
    };
    stdin.on('end', endInput);
    // SIGTERM is treated like stdin EOF: the server finishes what is in flight, then the relay exits 0.
    process.on('SIGTERM', endInput);
    stdin.on('error', endInput);
    stdin.pipe(socket, { end: false });
    socket.pipe(stdout, { end: false });
    stdout.on('error', () => socket.destroy());
    socket.on('error', (err) => note(`connection to the server failed: ${err.message}`));
    // The server ended its side (after draining, or because it is shutting down): end ours so the socket closes.
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      if (!inputEnded) writeError('UNAVAILABLE', 'the server closed the connection (it is shutting down); reconnect to start a new one');
      resolve(inputEnded ? 0 : 1);
    });
  });
}
