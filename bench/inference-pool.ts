/** Inference pool benchmark (issue 3): raw node-llama-cpp vs the InferencePool (worker threads) on the reference model, F32 and Q8_0. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { getLlama, LlamaCompletion, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { writeTestModel, type TestModelType } from '../src/runtime/gguf/index.js';
import { loadConfig, type Config } from '../src/runtime/config.js';
import { silentLog } from '../src/runtime/logger.js';
import { planThreads, type InferencePool } from '../src/runtime/pool/pool.js';
import { createInferencePool } from '../src/server.js';
import { writeResult, type Figure } from './harness/index.js';

/** A pool configuration to measure: config.inference keys over the server's defaults. */
export interface PoolVariant {
  name: string;
  inference: Partial<Config['inference']>;
}

export interface PoolBenchOptions {
  types?: TestModelType[];
  /** max_tokens of every request (EOS may end one earlier: only real tokens count). */
  tokens?: number;
  /** Concurrent streams to measure the aggregate at. */
  streams?: number[];
  /** Seconds one measurement keeps its streams busy (closed loop: a finished stream starts the next request). */
  windowS?: number;
  /** Rounds over raw single and every concurrency level, interleaved; each figure is the median of its rounds. */
  rounds?: number;
  variants?: PoolVariant[];
  /** Called with each measurement as it is made. */
  progress?: (line: string) => void;
}

export interface Measurement {
  type: TestModelType;
  runner: string;
  streams: number;
  requests: number;
  tokens: number;
  seconds: number;
  tokens_per_s: number;
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  peak_rss_bytes: number;
}

export interface PoolBenchReport {
  rows: Measurement[];
  figures: Figure[];
  /** node-llama-cpp's binaries in use: 'prebuilt', or 'localBuild' after `tabagent build-llama`. */
  llamaBuild: string;
}

/** The same sampling on both sides (min_p off: LlamaCompletion's default). */
const SAMPLING = { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0 };

/** A different prompt per request, so node-llama-cpp's prefix reuse cannot skip the raw baseline's prompt. */
function prompt(stream: number, seed: number): string {
  return `${seed} the ${stream} hello`;
}

/** The server's defaults (config.inference with nothing set) and the alternatives worth a measurement. */
export const defaultVariants: PoolVariant[] = [
  { name: 'pool (server default)', inference: {} },
  { name: 'pool, placement pack', inference: { placement: 'pack' } },
  { name: 'pool, 1 worker x 2 contexts', inference: { contexts: 2 } },
];

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function median(values: number[]): number {
  return percentile(values, 50) ?? 0;
}

/** Highest process RSS seen while `fn` runs (workers are threads of this process, so this is the pool's memory too). */
async function withPeakRss<T>(fn: () => Promise<T>): Promise<[T, number]> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
  try {
    const r = await fn();
    return [r, Math.max(peak, process.memoryUsage.rss())];
  } finally {
    clearInterval(timer);
  }
}

interface Done {
  tokens: number;
  ttft: number;
  start: number;
  end: number;
}

/** One stream generator: resolves with the tokens it produced and its time to first token. */
type Stream = (i: number, seed: number) => Promise<{ tokens: number; ttft: number }>;

/**
 * Keeps `streams` requests in flight for `windowS` seconds (a finished stream starts the next request) and returns
 * tokens/s over that window: requests still running at its end count in proportion to their time inside it, so the
 * uneven tail (EOS ends some requests early) does not dilute the aggregate.
 */
async function closedLoop(run: Stream, streams: number, windowS: number): Promise<{ done: Done[]; ttfts: number[]; seconds: number; tokens: number }> {
  const t0 = performance.now();
  const until = t0 + windowS * 1000;
  const done: Done[] = [];
  let seed = 1;
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      while (performance.now() < until) {
        const start = performance.now();
        const r = await run(i, seed++);
        done.push({ ...r, start, end: performance.now() });
      }
    }),
  );
  let tokens = 0;
  for (const d of done) {
    const inside = Math.max(0, Math.min(d.end, until) - d.start);
    tokens += d.end <= until ? d.tokens : (d.tokens * inside) / (d.end - d.start);
  }
  return { done, ttfts: done.map((d) => d.ttft), seconds: windowS, tokens };
}

/** The baseline: the simplest documented node-llama-cpp usage, one LlamaCompletion on one sequence, 1 thread. */
class RawRunner {
  private constructor(
    private readonly completion: LlamaCompletion,
    readonly close: () => Promise<void>,
  ) {}

  static async open(llama: Llama, file: string): Promise<RawRunner> {
    const model = await llama.loadModel({ modelPath: file });
    const context = await model.createContext({ threads: 1 });
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
    return new RawRunner(completion, async () => {
      completion.dispose();
      await context.dispose();
      await model.dispose();
    });
  }

  readonly stream =
    (maxTokens: number): Stream =>
    async (i, seed) => {
      const t0 = performance.now();
      let ttft = -1;
      let tokens = 0;
      await this.completion.generateCompletion(prompt(i, seed), {
        maxTokens,
        temperature: SAMPLING.temperature,
        topK: SAMPLING.top_k,
        topP: SAMPLING.top_p,
        minP: SAMPLING.min_p,
        seed,
        onToken: (t) => {
          if (ttft < 0) ttft = performance.now() - t0;
          tokens += t.length;
        },
      });
      return { tokens, ttft };
    };
}

/** A request through the pool as the model registry makes it: envelope, priority queue, worker, streamed deltas. */
function poolStream(pool: InferencePool, id: string, maxTokens: number): Stream {
  return async (i, seed) => {
    const t0 = performance.now();
    let ttft = -1;
    const r = await pool.generate(
      id,
      { kind: 'completion', prompt: prompt(i, seed) },
      { max_tokens: maxTokens, ...SAMPLING, seed },
      {
        priority: 'interactive',
        onText: () => {
          if (ttft < 0) ttft = performance.now() - t0;
        },
      },
    );
    return { tokens: r.usage.completion_tokens, ttft: ttft < 0 ? performance.now() - t0 : ttft };
  };
}

function serverConfig(variant: PoolVariant): Config {
  const config = loadConfig({ env: {} }).config;
  return { ...config, log_level: 'warn', inference: { ...config.inference, ...variant.inference } };
}

export function describeVariant(variant: PoolVariant): string {
  const inf = serverConfig(variant).inference;
  const plan = planThreads(inf);
  return `${plan.workers} worker(s) x ${plan.threads} thread x ${inf.contexts} context(s), placement ${inf.placement}, ${inf.max_sequences} sequences x ${inf.context_size} tokens`;
}

/** Windows of one runner at one concurrency, summarised: median tokens/s, pooled TTFT percentiles, peak RSS. */
interface Level {
  runner: string;
  streams: number;
  windows: Measurement[];
  tokens_per_s: number;
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  peak_rss_bytes: number;
}

export async function runPoolBench(options: PoolBenchOptions = {}): Promise<PoolBenchReport> {
  const types = options.types ?? ['f32', 'q8_0'];
  const maxTokens = options.tokens ?? 128;
  const streamsList = [...new Set([1, ...(options.streams ?? [1, 4, 8, 16])])].sort((a, b) => a - b);
  const windowS = options.windowS ?? 3;
  const rounds = options.rounds ?? 3;
  const variants = options.variants ?? defaultVariants;
  const say = options.progress ?? (() => {});
  const dir = await mkdtemp(path.join(tmpdir(), 'tabagent-pool-bench-'));
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  const rows: Measurement[] = [];
  const figures: Figure[] = [];
  try {
    for (const type of types) {
      const file = path.join(dir, `medium-${type}.gguf`);
      await writeTestModel(file, { size: 'medium', type });
      const label = `medium ${type.toUpperCase()}`;
      const levels = new Map<string, Level>();
      const ttftsOf = new Map<string, number[]>();
      const measure = async (runner: string, streams: number, run: Stream): Promise<void> => {
        const [m, rss] = await withPeakRss(() => closedLoop(run, streams, windowS));
        const row: Measurement = {
          type,
          runner,
          streams,
          requests: m.done.length,
          tokens: Math.round(m.tokens),
          seconds: m.seconds,
          tokens_per_s: +(m.tokens / m.seconds).toFixed(1),
          ttft_p50_ms: percentile(m.ttfts, 50),
          ttft_p99_ms: percentile(m.ttfts, 99),
          peak_rss_bytes: rss,
        };
        rows.push(row);
        const key = `${runner}\u0000${streams}`;
        const level = levels.get(key) ?? { runner, streams, windows: [], tokens_per_s: 0, ttft_p50_ms: null, ttft_p99_ms: null, peak_rss_bytes: 0 };
        levels.set(key, level);
        level.windows.push(row);
        level.tokens_per_s = +median(level.windows.map((w) => w.tokens_per_s)).toFixed(1);
        level.peak_rss_bytes = Math.max(level.peak_rss_bytes, rss);
        const ttfts = [...(ttftsOf.get(key) ?? []), ...m.ttfts];
        ttftsOf.set(key, ttfts);
        level.ttft_p50_ms = percentile(ttfts, 50);
        level.ttft_p99_ms = percentile(ttfts, 99);
        say(`${label} ${runner} x${streams}: ${row.tokens_per_s} tok/s, TTFT p50 ${row.ttft_p50_ms?.toFixed(1)} ms, RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
      };

      const raw = await RawRunner.open(llama, file);
      const rawStream = raw.stream(maxTokens);
      await rawStream(0, 1); // warm-up
      try {
        // one pool at a time (each worker holds its own KV cache); rounds interleave raw and every concurrency
        // level, so load from other processes falls on all of them alike, and each figure is a median of rounds
        for (const variant of variants) {
          const t0 = performance.now();
          const pool = createInferencePool(serverConfig(variant), silentLog);
          try {
            await pool.start();
            await pool.load('m', file);
            say(`${label} ${variant.name}: ${describeVariant(variant)}; started and loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
            // warm every worker (the first decodes allocate compute buffers)
            await Promise.all(Array.from({ length: pool.options.workers * 2 }, (_, i) => poolStream(pool, 'm', 8)(i, i + 1)));
            const run = poolStream(pool, 'm', maxTokens);
            const steps: Array<() => Promise<void>> = [() => measure(RAW, 1, rawStream), ...streamsList.map((n) => () => measure(variant.name, n, run))];
            for (let r = 0; r < rounds; r++) for (const step of r % 2 === 0 ? steps : [...steps].reverse()) await step();
          } finally {
            await pool.close();
          }
        }
      } finally {
        await raw.close();
      }
      figures.push(...typeFigures(type, label, variants, levels, windowS));
      await rm(file);
    }
  } finally {
    await llama.dispose();
    await rm(dir, { recursive: true, force: true });
  }
  return { rows, figures, llamaBuild: llama.buildType };
}

const RAW = 'raw node-llama-cpp';

function typeFigures(type: TestModelType, label: string, variants: PoolVariant[], levels: Map<string, Level>, windowS: number): Figure[] {
  const level = (runner: string, streams: number) => levels.get(`${runner}\u0000${streams}`);
  const ttft = (l: Level) => ({
    ...(l.ttft_p50_ms !== null ? { p50_ms: +l.ttft_p50_ms.toFixed(1) } : {}),
    ...(l.ttft_p99_ms !== null ? { p99_ms: +l.ttft_p99_ms.toFixed(1) } : {}),
  });
  const raw = level(RAW, 1)!;
  const figures: Figure[] = [
    {
      name: `${label}: raw node-llama-cpp, 1 stream`,
      value: raw.tokens_per_s,
      unit: 'tok/s',
      ...ttft(raw),
      notes: `the baseline: one LlamaCompletion on one sequence, 1 thread, in this process; median of ${raw.windows.length} windows of ${windowS} s interleaved with the pools'; p50/p99 = time to first token`,
    },
  ];
  for (const variant of variants) {
    const single = level(variant.name, 1);
    if (!single) continue;
    const isDefault = variant === variants[0];
    const goal = type === 'f32' ? 2.2 : 1.3;
    let peak = 0;
    for (const l of levels.values()) if (l.runner === variant.name) peak = Math.max(peak, l.peak_rss_bytes);
    for (const l of [...levels.values()].filter((x) => x.runner === variant.name).sort((a, b) => a.streams - b.streams)) {
      const vsRaw = l.tokens_per_s / raw.tokens_per_s;
      const vsSingle = l.tokens_per_s / single.tokens_per_s;
      figures.push(
        l.streams === 1
          ? {
              name: `${label}: ${variant.name}, 1 stream`,
              value: l.tokens_per_s,
              unit: 'tok/s',
              ...ttft(l),
              baseline: { name: 'raw node-llama-cpp, 1 stream', value: raw.tokens_per_s },
              ratio: +vsRaw.toFixed(2),
              ...(isDefault ? { target: '>= 0.95x raw', pass: vsRaw >= 0.95 } : {}),
              notes: `${describeVariant(variant)}; median of ${l.windows.length} windows`,
            }
          : {
              name: `${label}: ${variant.name}, ${l.streams} streams`,
              value: l.tokens_per_s,
              unit: 'tok/s',
              ...ttft(l),
              baseline: { name: `${variant.name}, 1 stream`, value: single.tokens_per_s },
              ratio: +vsSingle.toFixed(2),
              ...(isDefault && l.streams === 8 ? { target: `>= ${goal}x pool single`, pass: vsSingle >= goal } : {}),
              notes: `aggregate; ${vsRaw.toFixed(2)}x raw single; median of ${l.windows.length} windows`,
            },
      );
    }
    figures.push({
      name: `${label}: ${variant.name}, peak RSS`,
      value: +(peak / 2 ** 20).toFixed(0),
      unit: 'MiB',
      notes: "whole process: the pool's workers are its threads (the raw baseline's model and context are included)",
    });
  }
  return figures;
}

export function poolMarkdown(rows: Measurement[]): string {
  const lines = ['| model | runner | streams | requests | tok/s | TTFT p50 ms | TTFT p99 ms | peak RSS MiB |', '|---|---|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    lines.push(
      `| medium ${r.type.toUpperCase()} | ${r.runner} | ${r.streams} | ${r.requests} | ${r.tokens_per_s} | ${r.ttft_p50_ms?.toFixed(1) ?? '-'} | ${r.ttft_p99_ms?.toFixed(1) ?? '-'} | ${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

const VARIANT_FLAGS: Record<string, PoolVariant> = {
  default: defaultVariants[0],
  pack: defaultVariants[1],
  contexts2: defaultVariants[2],
  // the thread policy's alternatives: 2 threads per context, and an oversubscribed 2 workers x 2 threads on 2 cores
  threads2: { name: 'pool, 1 worker x 2 threads', inference: { threads: 2 } },
  oversubscribed: { name: 'pool, 2 workers x 2 threads', inference: { workers: 2, threads: 2 } },
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const variants = arg('variants')?.split(',').map((v) => {
    const variant = VARIANT_FLAGS[v];
    if (!variant) throw new Error(`unknown variant ${v} (have ${Object.keys(VARIANT_FLAGS).join(', ')})`);
    return variant;
  });
  const opts: PoolBenchOptions = {
    types: arg('types')?.split(',') as TestModelType[] | undefined,
    tokens: arg('tokens') ? Number(arg('tokens')) : undefined,
    streams: arg('streams')?.split(',').map(Number),
    windowS: arg('window') ? Number(arg('window')) : undefined,
    rounds: arg('rounds') ? Number(arg('rounds')) : undefined,
    variants,
    progress: (line) => process.stderr.write(`${line}\n`),
  };
  const report = await runPoolBench(opts);
  process.stdout.write(`${poolMarkdown(report.rows)}\n`);
  if (arg('write') !== 'false') {
    const file = writeResult({
      suite: 'inference-pool',
      title: `Inference pool (worker threads) vs raw node-llama-cpp, reference model, llama.cpp ${report.llamaBuild === 'localBuild' ? 'built here by `tabagent build-llama`' : 'prebuilt binaries'}`,
      command: `node dist/bench/inference-pool.js ${process.argv.slice(2).join(' ')}`.trim(),
      figures: report.figures,
      rows: report.rows,
    });
    process.stderr.write(`wrote ${file}\n`);
  }
}
