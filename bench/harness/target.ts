/** Targets: a real server process the harness starts (synthetic model, temp data dir), or a running one given by a loopback address. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTestModel, type TestModelSize, type TestModelType } from '../../src/runtime/gguf/index.js';
import { readProc, readSystemRoute } from './monitor.js';
import type { ServerMode, Target } from './types.js';

/** dist/bench/harness/target.js -> dist/src/cli.js */
export const cliPath = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export interface StartOptions {
  mode?: ServerMode;
  /** Write a synthetic model and preload it. */
  model?: { size: TestModelSize; type: TestModelType } | false;
  /** Extra environment (TABAGENT_* config keys). Inference defaults to 1 thread per context. */
  env?: Record<string, string>;
  /** Extra CLI flags. */
  args?: string[];
  startupTimeoutMs?: number;
}

export interface StartedTarget extends Target {
  process: ChildProcess;
  /** Last lines the server wrote on stderr (for error messages). */
  stderrTail(): string;
  stop(): Promise<number | null>;
}

const models = new Map<string, string>();
let modelDir: string | undefined;

/** Writes a synthetic GGUF once per harness run and size/type; returns its path. */
export async function testModel(size: TestModelSize, type: TestModelType): Promise<string> {
  const key = `${size}-${type}`;
  const existing = models.get(key);
  if (existing) return existing;
  modelDir ??= mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-models-'));
  const file = path.join(modelDir, `bench-${key}.gguf`);
  await writeTestModel(file, { size, type });
  models.set(key, file);
  return file;
}

/** Removes the synthetic models written by this process. */
export function cleanupModels(): void {
  if (modelDir) rmSync(modelDir, { recursive: true, force: true });
  modelDir = undefined;
  models.clear();
}

/** Starts `node dist/src/cli.js serve` on free loopback ports and waits for its 'server started' line. */
export async function startServer(opts: StartOptions = {}): Promise<StartedTarget> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build first`);
  const mode = opts.mode ?? 'all';
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-data-'));
  const args = [cliPath, 'serve', '--mode', mode, '--host', '127.0.0.1', '--port', '0', '--webrtc-port', '0', '--data-dir', dataDir, '--log-level', 'info', '--no-stdio'];
  let model: Target['model'];
  if (opts.model) {
    const file = await testModel(opts.model.size, opts.model.type);
    args.push('--model', file);
    model = { id: path.basename(file, '.gguf'), path: file };
  }
  args.push(...(opts.args ?? []));
  const env: Record<string, string> = { TABAGENT_INFERENCE__THREADS: '1', TABAGENT_DATA_DIR: dataDir, ...opts.env };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const tail: string[] = [];
  let partial = '';
  let listeners: Record<string, string> | undefined;
  let onStarted: (() => void) | undefined;
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      tail.push(line);
      if (tail.length > 40) tail.shift();
      if (!listeners && line.includes('server started')) {
        try {
          const rec = JSON.parse(line) as { msg?: string; listeners?: Record<string, string> };
          if (rec.msg === 'server started') {
            listeners = rec.listeners ?? {};
            onStarted?.();
          }
        } catch {
          // not a JSON log line
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timeoutMs = opts.startupTimeoutMs ?? 60_000;
  const stderrTail = (): string => tail.slice(-12).join('\n');
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    }
    rmSync(dataDir, { recursive: true, force: true });
    return child.exitCode;
  };
  const started = await Promise.race([
    new Promise<'started'>((resolve) => {
      onStarted = () => resolve('started');
      if (listeners) resolve('started');
    }),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref()),
  ]);
  if (started !== 'started') {
    await stop();
    throw new Error(`the server (mode ${mode}) ${started === 'exited' ? `exited with code ${child.exitCode}` : `did not start within ${timeoutMs} ms`} before logging 'server started'; its stderr:\n${stderrTail()}`);
  }
  const http = listeners!['http'] ?? '';
  const webrtc = listeners!['webrtc'] ?? http;
  const target: StartedTarget = {
    url: http,
    wsUrl: http ? `${http.replace(/^http/, 'ws')}/v1/ws` : '',
    webrtcUrl: webrtc,
    pid: child.pid!,
    dataDir,
    started: true,
    cliPath,
    env,
    process: child,
    stderrTail,
    stop,
  };
  if (model) target.model = model;
  return target;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost', '[::1]']);

/** A server given by address: loopback only. Its pid (from the `system` route) is used for /proc sampling when local; its loaded model is found when not named. */
export async function urlTarget(url: string, model?: string): Promise<Target> {
  const u = new URL(url);
  if (!LOOPBACK.has(u.hostname)) throw new Error(`--url must be a loopback address (127.0.0.1, ::1, localhost); got ${u.hostname}: load tests never leave this machine`);
  const base = `${u.protocol}//${u.host}`;
  const target: Target = { url: base, wsUrl: `${base.replace(/^http/, 'ws')}/v1/ws`, webrtcUrl: base, started: false, cliPath, env: {} };
  const info = await readSystemRoute(base);
  if (info?.pid !== undefined && readProc(info.pid)) target.pid = info.pid;
  try {
    const res = await fetch(`${base}/v1/system/info`, { signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { listeners?: Record<string, string> };
    const webrtc = body.listeners?.['webrtc'];
    if (webrtc) target.webrtcUrl = webrtc;
  } catch {
    // an older server without listeners in `system`: signalling on the main port
  }
  // The model: the one named, else the first the server has loaded (its path lets baseline-llama load the same file).
  try {
    const res = await fetch(`${base}/v1/models/loaded`, { signal: AbortSignal.timeout(2000) });
    const loaded = res.ok ? ((await res.json()) as { models?: { id: string; path: string }[] }).models ?? [] : [];
    const m = model ? loaded.find((x) => x.id === model) : loaded[0];
    if (m) target.model = { id: m.id, path: m.path };
  } catch {
    // no model routes: chat profiles then need --model
  }
  if (model && !target.model) target.model = { id: model, path: '' };
  return target;
}

/** A target for profiles that need no server (the bus benchmark, baselines that start their own). */
export function noServer(): Target {
  return { url: '', wsUrl: '', webrtcUrl: '', started: false, cliPath, env: {} };
}
