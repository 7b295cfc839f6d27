/** Starts the real server as a child process (tsx from source) on port 0 and reads its listeners from the 'server started' log line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServerProcessOptions {
  mode?: 'native' | 'http' | 'webrtc' | 'both' | 'all';
  /** Extra CLI flags after `serve`. */
  args?: string[];
  env?: Record<string, string>;
  /** Write a synthetic GGUF model of this size into <data_dir>/models and preload it. */
  model?: 'tiny' | 'small' | 'medium';
  /** An existing data directory (default: a fresh temporary one, removed on stop). */
  dataDir?: string;
  /** How long to wait for 'server started' (ms). */
  startTimeoutMs?: number;
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  /** Listeners by name as the server logged them ({http: 'http://127.0.0.1:PORT', ...}). */
  listeners: Record<string, string>;
  /** Port of the HTTP listener (0 when the mode has none). */
  port: number;
  url: string;
  wsUrl: string;
  dataDir: string;
  /** Id of the preloaded synthetic model, when one was asked for. */
  modelId?: string;
  /** Everything the server wrote on stderr so far. */
  stderr(): string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** Sends a signal (SIGTERM by default) and resolves with the exit code once it has exited. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServerProcess(opts: ServerProcessOptions = {}): Promise<ServerProcess> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'tabagent-test-'));
  const args = ['--import', 'tsx', path.join(ROOT, 'src/cli.ts'), 'serve', '--mode', opts.mode ?? 'http', '--port', '0', '--data-dir', dataDir];
  let modelId: string | undefined;
  if (opts.model) {
    const { writeTestModel } = await import('../../src/runtime/gguf/index.js');
    const models = path.join(dataDir, 'models');
    mkdirSync(models, { recursive: true });
    modelId = `test-${opts.model}`;
    const file = path.join(models, `${modelId}.gguf`);
    await writeTestModel(file, { size: opts.model });
    args.push('--model', file);
  }
  if ((opts.mode ?? 'http') !== 'native' && !(opts.args ?? []).includes('--webrtc-port')) args.push('--webrtc-port', '0');
  args.push(...(opts.args ?? []));
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, TABAGENT_LOG_LEVEL: process.env['TABAGENT_LOG_LEVEL'] ?? 'info', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const logs = (): Record<string, unknown>[] =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A server that never said it started must not outlive the test that launched it.
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${opts.startTimeoutMs ?? 90_000} ms; stderr:\n${err}`));
    }, opts.startTimeoutMs ?? 90_000);
    const check = (): void => {
      const line = logs().find((l) => l['msg'] === 'server started');
      if (line) {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        resolve(line);
      }
    };
    child.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with code ${code} before starting; stderr:\n${err}`));
    });
  });
  const listeners = (started['listeners'] ?? {}) as Record<string, string>;
  const url = listeners['http'] ?? '';
  const port = url ? Number(new URL(url).port) : 0;
  const result: ServerProcess = {
    child,
    pid: child.pid!,
    listeners,
    port,
    url,
    wsUrl: url ? `${url.replace(/^http/, 'ws')}/v1/ws` : '',
    dataDir,
    stderr: () => err,
    logs,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
  if (modelId !== undefined) result.modelId = modelId;
  return result;
}
