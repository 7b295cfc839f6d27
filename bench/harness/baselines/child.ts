/** Baseline servers run as child processes speaking JSON lines on stdin/stdout: spawn one and exchange lines with it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface LineChild {
  child: ChildProcess;
  /** Sends one JSON line and resolves with the next line the child writes. Calls are answered in order. */
  ask<T = unknown>(msg: unknown): Promise<T>;
  stop(): Promise<void>;
}

export async function spawnLineChild<R = { ready: true }>(script: string, args: string[] = [], readyTimeoutMs = 60_000): Promise<LineChild & { ready: R }> {
  const file = fileURLToPath(new URL(script, import.meta.url));
  const child = spawn(process.execPath, [file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const waiting: { resolve(v: unknown): void; reject(e: Error): void }[] = [];
  const stderr: string[] = [];
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (t: string) => {
    stderr.push(t);
    if (stderr.length > 20) stderr.shift();
  });
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (t: string) => {
    partial += t;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const w = waiting.shift();
      try {
        w?.resolve(JSON.parse(line));
      } catch (err) {
        w?.reject(err as Error);
      }
    }
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      for (const w of waiting.splice(0)) w.reject(new Error(`${script} exited (code ${code}): ${stderr.join('').trim().slice(-400)}`));
      resolve();
    }),
  );
  child.stdin!.on('error', () => {});
  const ask = <T>(msg: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      waiting.push({ resolve: resolve as (v: unknown) => void, reject });
      child.stdin!.write(JSON.stringify(msg) + '\n');
    });
  // The child's first line says it is ready (and may carry facts such as its port).
  const ready = new Promise<unknown>((resolve, reject) => waiting.push({ resolve, reject }));
  const timer = setTimeout(() => child.kill('SIGKILL'), readyTimeoutMs);
  const readyLine = (await ready.finally(() => clearTimeout(timer))) as R;
  return {
    ready: readyLine,
    child,
    ask,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.kill('SIGTERM');
        await exited;
        clearTimeout(t);
      }
    },
  };
}


/**
 * The child's side: says it is ready, then answers each JSON line on stdin with one JSON line on stdout, in order.
 * When stdin closes, `onEnd` runs after the last answer.
 */
export function serveLines(answer: (msg: unknown) => Promise<unknown>, onEnd: () => void | Promise<void>): void {
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  let partial = '';
  let chain = Promise.resolve();
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (t: string) => {
    partial += t;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      chain = chain.then(async () => {
        process.stdout.write(JSON.stringify(await answer(JSON.parse(line))) + '\n');
      });
    }
  });
  process.stdin.on('end', () => void chain.then(onEnd));
}
