/** Inference benchmark (issue 3): raw node-llama-cpp vs InferenceEngine, single stream and 1/4/8/16 concurrent streams, F32 and Q8_0. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { getLlama, LlamaCompletion, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { writeTestModel, type TestModelType } from '../src/runtime/gguf/index.js';
import { InferenceEngine } from '../src/runtime/inference/engine.js';
import { writeResult } from './harness/index.js';

export interface InferenceBenchOptions {
  types?: TestModelType[];
  /** Tokens each stream generates (EOS can end a stream early: only real tokens are counted). */
  tokens?: number;
  streams?: number[];
  /** Engine variants: contexts per model (each decodes on its own core). */
  contexts?: number[];
  /** Also measure node-llama-cpp with several sequences in one context (the naive batching). */
  rawConcurrent?: boolean;
}

export interface InferenceRow {
  type: TestModelType;
  runner: string;
  streams: number;
  tokens: number;
  seconds: number;
  tokens_per_s: number;
  ttft_p50_ms: number | null;
  ttft_p99_ms: number | null;
  /** Aggregate tokens/s over this type's raw single-stream figure. */
  vs_raw_single: number;
  /** Aggregate tokens/s over the same runner's single-stream figure. */
  vs_own_single: number;
}

const SAMPLING = { temperature: 0.8, topK: 40, topP: 0.95 };

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Measured {
  tokens: number;
  seconds: number;
  ttfts: number[];
}

/** The simplest documented usage: one LlamaCompletion per sequence of one context, 1 thread. */
async function rawRun(llama: Llama, file: string, streams: number, maxTokens: number): Promise<Measured> {
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: 1024, sequences: streams, threads: 1 });
  try {
    const completions = Array.from({ length: streams }, () => new LlamaCompletion({ contextSequence: context.getSequence() }));
    const one = async (c: LlamaCompletion, i: number, n: number) => {
      const t0 = performance.now();
      let first = -1;
      let count = 0;
      await c.generateCompletion(`the ${i} hello`, {
        maxTokens: n,
        ...SAMPLING,
        seed: i + 1,
        onToken: (tokens) => {
          if (first < 0) first = performance.now() - t0;
          count += tokens.length;
        },
      });
      return { count, ttft: first };
    };
    await one(completions[0], 0, 8); // warm-up
    const t0 = performance.now();
    const results = await Promise.all(completions.map((c, i) => one(c, i, maxTokens)));
    const seconds = (performance.now() - t0) / 1000;
    return { tokens: results.reduce((a, r) => a + r.count, 0), seconds, ttfts: results.map((r) => r.ttft) };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

async function engineRun(engine: InferenceEngine, id: string, streams: number, maxTokens: number): Promise<Measured> {
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: streams }, (_, i) =>
      engine.generate(id, { kind: 'completion', prompt: `the ${i} hello` }, { max_tokens: maxTokens, temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0, seed: i + 1 }, () => {}, new AbortController().signal),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { tokens: results.reduce((a, r) => a + r.usage.completion_tokens, 0), seconds, ttfts: results.map((r) => r.ttft_ms) };
}

export async function runInferenceBench(options: InferenceBenchOptions = {}): Promise<InferenceRow[]> {
  const types = options.types ?? ['f32', 'q8_0'];
  const tokens = options.tokens ?? 96;
  const streams = options.streams ?? [1, 4, 8, 16];
  const contextsList = options.contexts ?? [1, 2];
  const dir = await mkdtemp(path.join(tmpdir(), 'tabagent-bench-'));
  const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
  const rows: InferenceRow[] = [];
  try {
    for (const type of types) {
      const file = path.join(dir, `medium-${type}.gguf`);
      await writeTestModel(file, { size: 'medium', type });
      const typeRows: Array<Omit<InferenceRow, 'vs_raw_single' | 'vs_own_single'>> = [];
      const add = (runner: string, n: number, m: Measured) => {
        typeRows.push({
          type,
          runner,
          streams: n,
          tokens: m.tokens,
          seconds: +m.seconds.toFixed(3),
          tokens_per_s: +(m.tokens / m.seconds).toFixed(1),
          ttft_p50_ms: percentile(m.ttfts, 50),
          ttft_p99_ms: percentile(m.ttfts, 99),
        });
        process.stderr.write(`${type} ${runner} x${n}: ${(m.tokens / m.seconds).toFixed(1)} tok/s\n`);
      };
      add('raw node-llama-cpp', 1, await rawRun(llama, file, 1, tokens));
      if (options.rawConcurrent ?? true) for (const n of streams.filter((s) => s > 1 && s <= 8)) add('raw node-llama-cpp', n, await rawRun(llama, file, n, tokens));
      for (const contexts of contextsList) {
        const engine = new InferenceEngine({ threads: 1, contextSize: 1024, maxSequences: Math.ceil(Math.max(...streams) / contexts), contexts });
        try {
          await engine.load('m', file);
          await engineRun(engine, 'm', 1, 8); // warm-up
          const runner = `engine (${contexts} context${contexts > 1 ? 's' : ''})`;
          for (const n of streams) add(runner, n, await engineRun(engine, 'm', n, tokens));
          // single stream again at the end: the figure the concurrency ratios use comes from both ends of the run
          add(runner, 1, await engineRun(engine, 'm', 1, tokens));
        } finally {
          await engine.dispose();
        }
      }
      // the raw single-stream figure again, so drift over the run shows
      add('raw node-llama-cpp', 1, await rawRun(llama, file, 1, tokens));
      const avgSingle = (runner: string) => {
        const singles = typeRows.filter((r) => r.runner === runner && r.streams === 1).map((r) => r.tokens_per_s);
        return singles.reduce((a, b) => a + b, 0) / singles.length;
      };
      const rawSingle = avgSingle('raw node-llama-cpp');
      for (const r of typeRows) {
        rows.push({ ...r, vs_raw_single: +(r.tokens_per_s / rawSingle).toFixed(2), vs_own_single: +(r.tokens_per_s / avgSingle(r.runner)).toFixed(2) });
      }
      await rm(file);
    }
  } finally {
    await llama.dispose();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

export function inferenceMarkdown(rows: InferenceRow[]): string {
  const lines = [
    '| model | runner | streams | tokens | tok/s | x raw single | x own single | TTFT p50 ms | TTFT p99 ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| medium ${r.type.toUpperCase()} | ${r.runner} | ${r.streams} | ${r.tokens} | ${r.tokens_per_s} | ${r.vs_raw_single} | ${r.vs_own_single} | ${r.ttft_p50_ms?.toFixed(1) ?? '-'} | ${r.ttft_p99_ms?.toFixed(1) ?? '-'} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const rows = await runInferenceBench({
    types: arg('types')?.split(',') as TestModelType[] | undefined,
    tokens: arg('tokens') ? Number(arg('tokens')) : undefined,
    streams: arg('streams')?.split(',').map(Number),
    contexts: arg('contexts')?.split(',').map(Number),
    rawConcurrent: arg('raw-concurrent') !== 'false',
  });
  process.stdout.write(`${inferenceMarkdown(rows)}\n`);
  if (arg('write') !== 'false') {
    const file = writeResult({
      suite: 'inference-engine',
      title: 'Inference engine in-process vs node-llama-cpp used naively, reference model',
      command: `node dist/bench/inference-engine.js ${process.argv.slice(2).join(' ')}`.trim(),
      figures: rows.map((r) => ({
        name: `medium ${r.type.toUpperCase()}: ${r.runner}, ${r.streams} stream${r.streams > 1 ? 's' : ''}`,
        value: r.tokens_per_s,
        unit: 'tok/s',
        baseline: { name: 'raw node-llama-cpp, 1 stream', value: +(r.tokens_per_s / r.vs_raw_single).toFixed(1) },
        ratio: r.vs_raw_single,
        ...(r.ttft_p50_ms !== null ? { p50_ms: +r.ttft_p50_ms.toFixed(1) } : {}),
        ...(r.ttft_p99_ms !== null ? { p99_ms: +r.ttft_p99_ms.toFixed(1) } : {}),
        notes: `${r.vs_own_single}x this runner's single stream; ${r.tokens} tokens in ${r.seconds} s; p50/p99 = time to first token; in one process, no worker threads`,
      })),
      rows,
    });
    process.stderr.write(`wrote ${file}\n`);
  }
}
