/** Native-messaging benchmark: pipelined health and short chat over a host's pipes, large-payload MB/s, cold spawn to first reply. */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TabAgentNativeClient, TabAgentRequestError } from '../src/client/native-messaging.js';
import { isLive } from '../src/transports/native/ipc.js';
import { spawnHost } from '../src/transports/native/stream-port.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(root, 'dist/src/cli.js');
const hostMain = path.join(root, 'dist/src/transports/native/host-main.js');

interface Figure {
  name: string;
  value: number;
  unit: string;
  p50_ms?: number;
  p99_ms?: number;
  baseline?: { name: string; value: number };
  ratio?: number;
  target?: string;
  pass?: boolean;
  notes?: string;
}

const pct = (sorted: number[], p: number): number => Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 1000) / 1000;
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

/** Keeps `window` requests in flight on one port until `total` are done; latency per request. */
async function pipelined(client: TabAgentNativeClient, total: number, window: number, make: () => [string, unknown]): Promise<{ rps: number; lat: number[]; errors: number }> {
  const lat: number[] = [];
  let next = 0;
  let errors = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (next < total) {
      next++;
      const [route, payload] = make();
      const s = performance.now();
      await client.request(route, payload).catch(() => errors++);
      lat.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return { rps: total / ((performance.now() - t0) / 1000), lat: lat.sort((a, b) => a - b), errors };
}

async function timeToExit(cmd: string[], input?: Buffer): Promise<number> {
  const s = performance.now();
  const child = spawn(process.execPath, cmd, { stdio: ['pipe', 'ignore', 'ignore'] });
  if (input) child.stdin.end(input);
  else child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  return performance.now() - s;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const requests = Number(argv[argv.indexOf('--requests') + 1]) || 2000;
  const model = argv.includes('--model') ? argv[argv.indexOf('--model') + 1]! : undefined;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-native-'));
  const dataDir = path.join(tmp, 'data');
  mkdirSync(dataDir);
  const env = { ...process.env, TABAGENT_LOG_LEVEL: 'warn', TABAGENT_MODE: 'native' };
  const serverArgs = [cli, 'serve', '--mode', 'native', '--no-stdio', '--data-dir', dataDir, ...(model ? ['--model', model] : [])];
  const server = spawn(process.execPath, serverArgs, { stdio: 'ignore', env });
  const figures: Figure[] = [];
  try {
    while (!(await isLive(path.join(dataDir, 'tabagent.sock')))) await new Promise((r) => setTimeout(r, 25));
    const host = spawnHost(hostMain, ['--data-dir', dataDir], env);
    const client = new TabAgentNativeClient(host.port);
    await pipelined(client, 200, 16, () => ['health', null]);

    const h = await pipelined(client, requests, 64, () => ['health', null]);
    figures.push({ name: 'health, pipelined (64 in flight, 1 host)', value: round(h.rps, 0), unit: 'req/s', p50_ms: pct(h.lat, 50), p99_ms: pct(h.lat, 99), notes: `${requests} requests, ${h.errors} errors` });
    const h1 = await pipelined(client, Math.min(requests, 500), 1, () => ['health', null]);
    figures.push({ name: 'health, one at a time (1 host)', value: round(h1.rps, 0), unit: 'req/s', p50_ms: pct(h1.lat, 50), p99_ms: pct(h1.lat, 99) });

    if (model) {
      const id = path.basename(model, '.gguf');
      const chat = await pipelined(client, 32, 4, () => ['chat', { model: id, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, temperature: 0, stream: true }]);
      figures.push({ name: 'short streamed chat (8 tokens), 4 in flight', value: round(chat.rps, 2), unit: 'req/s', p50_ms: pct(chat.lat, 50), p99_ms: pct(chat.lat, 99), notes: `${chat.errors} errors; model ${id}` });
    }

    // Browser -> host: an 8 MiB request, fully decoded and parsed by the server (health refuses the payload, which is the cheapest full read).
    const big = { blob: 'x'.repeat(8 * 1024 * 1024) };
    const inbound: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      await client.request('health', big).catch((err: TabAgentRequestError) => err);
      inbound.push(performance.now() - s);
    }
    inbound.sort((a, b) => a - b);
    figures.push({ name: 'large request in (8 MiB frame)', value: round(8 / (inbound[2]! / 1000)), unit: 'MB/s', p50_ms: round(inbound[2]!, 1), notes: 'median of 5; relay + server decode + JSON.parse' });

    // Host -> browser: a ~3.2 MiB reply split into continuation frames (needs the storage routes).
    const content = 'y'.repeat(800 * 1024);
    const saved = await client.request('save_message', { session_id: 'bench', create_if_missing: true, message: { role: 'user', content } }).then(
      () => true,
      () => false,
    );
    if (saved) {
      for (let i = 0; i < 3; i++) await client.request('save_message', { session_id: 'bench', message: { role: 'user', content } });
      const out: number[] = [];
      for (let i = 0; i < 5; i++) {
        const s = performance.now();
        await client.request('get_history', { session_id: 'bench', limit: 10 });
        out.push(performance.now() - s);
      }
      out.sort((a, b) => a - b);
      figures.push({ name: 'large reply out (3.2 MiB, continuation frames)', value: round(3.2 / (out[2]! / 1000)), unit: 'MB/s', p50_ms: round(out[2]!, 1), notes: 'median of 5; includes the LevelDB read' });
    }
    client.close();
    await host.exited;

    // Cold spawn: a new host process per request (what sendNativeMessage does), against bare node start-up.
    const frame = Buffer.from(JSON.stringify({ request_id: 'c', route: 'health' }));
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32LE(frame.length);
    const cold: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < 10; i++) {
      bare.push(await timeToExit(['-e', '0']));
      const s = performance.now();
      const one = spawnHost(hostMain, ['--data-dir', dataDir], env);
      const c1 = new TabAgentNativeClient(one.port);
      await c1.request('health');
      cold.push(performance.now() - s);
      c1.close();
      await one.exited;
    }
    cold.sort((a, b) => a - b);
    bare.sort((a, b) => a - b);
    const coldP50 = pct(cold, 50);
    const bareP50 = pct(bare, 50);
    figures.push({
      name: 'cold spawn to first reply (health)',
      value: coldP50,
      unit: 'ms',
      p50_ms: coldP50,
      p99_ms: pct(cold, 99),
      baseline: { name: 'bare `node -e 0` spawn to exit', value: bareP50 },
      ratio: round(coldP50 / bareP50, 2),
      target: '<= 150 ms (lower is better)',
      pass: coldP50 <= 150,
      notes: '10 spawns, server already running',
    });
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.on('exit', r));
    rmSync(tmp, { recursive: true, force: true });
  }

  const result = {
    schema: 'tabagent-bench/1',
    suite: 'native',
    title: 'Native messaging',
    command: `node dist/bench/native.js --requests ${requests}${model ? ' --model <tiny.gguf>' : ''}`,
    date: new Date().toISOString(),
    host: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: process.platform, total_mem_bytes: os.totalmem() },
    figures,
  };
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  writeFileSync(path.join(root, 'bench/results/native.json'), JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`| figure | value | p50 ms | p99 ms | notes |\n|---|---|---|---|---|\n`);
  for (const f of figures) process.stdout.write(`| ${f.name} | ${f.value} ${f.unit} | ${f.p50_ms ?? ''} | ${f.p99_ms ?? ''} | ${[f.baseline ? `baseline ${f.baseline.name}: ${f.baseline.value}, ratio ${f.ratio}` : '', f.notes ?? ''].filter(Boolean).join('; ')} |\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
