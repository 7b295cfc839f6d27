/** Output: run tables (markdown), figures from runs, bench/results/<suite>.json files, and BENCHMARKS.md from all of them. */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostFacts } from './monitor.js';
import type { BenchResult, Figure, RunResult } from './types.js';

/** The repository root (dist/bench/harness/report.js -> ../../..; bench/harness/report.ts under tsx -> ../..). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'tabagent-server') return dir;
    } catch {
      // not here: go up
    }
    dir = path.dirname(dir);
  }
  return process.cwd();
}

export const resultsDir = (): string => path.join(repoRoot(), 'bench', 'results');

const mib = (b: number | undefined): string => (b === undefined ? '' : `${(b / 1048576).toFixed(0)} MiB`);
const num = (x: number | undefined, digits = 0): string => (x === undefined ? '' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const ms = (x: number | undefined): string => (x === undefined ? '' : x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(0));

function errorsCell(r: RunResult): string {
  const e = Object.entries(r.errors);
  return e.length === 0 ? '0' : e.map(([code, n]) => `${code}: ${n}`).join(', ');
}

/** One markdown table of runs: throughput, latency percentiles, tokens, errors, server RSS. */
export function runsTable(runs: RunResult[]): string {
  const head = '| Profile | Loop | Clients | Requests | Req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | Tokens/s | TTFT p50/p99 ms | Errors | Server peak RSS | CPU % server / generator |';
  const sep = '|' + head.split('|').slice(1, -1).map(() => '---').join('|') + '|';
  const rows = runs.map((r) =>
    [
      r.profile,
      r.mode === 'open' ? `open ${r.rate}/s` : 'closed',
      r.concurrency,
      r.requests,
      num(r.throughput_rps),
      ms(r.latency.p50_ms),
      ms(r.latency.p90_ms),
      ms(r.latency.p99_ms),
      ms(r.latency.p99_9_ms),
      ms(r.latency.max_ms),
      num(r.tokens_per_s, 1),
      r.ttft ? `${ms(r.ttft.p50_ms)} / ${ms(r.ttft.p99_ms)}` : '',
      errorsCell(r),
      mib(r.server_peak_rss_bytes),
      // Older result files have no CPU figures.
      r.generator_cpu_pct === undefined ? '' : `${r.server_cpu_pct === undefined ? '?' : num(r.server_cpu_pct)} / ${num(r.generator_cpu_pct)}`,
    ].join(' | '),
  );
  return [head, sep, ...rows.map((r) => `| ${r} |`)].join('\n');
}

/** A figure from a run: tokens/s for streams, requests/s otherwise, with the latency percentiles. */
export function figureOf(r: RunResult, name?: string): Figure {
  const tokens = r.tokens_per_s !== undefined;
  const f: Figure = {
    name: name ?? `${r.profile} (${r.mode === 'open' ? `open loop ${r.rate}/s` : `${r.concurrency} clients`})`,
    value: tokens ? r.tokens_per_s! : r.throughput_rps,
    unit: tokens ? 'tokens/s' : 'req/s',
    p50_ms: r.latency.p50_ms,
    p99_ms: r.latency.p99_ms,
  };
  const notes: string[] = [];
  const errs = Object.values(r.errors).reduce((a, b) => a + b, 0);
  if (errs > 0) notes.push(`errors ${errorsCell(r)}`);
  if (r.ttft) notes.push(`TTFT p50 ${ms(r.ttft.p50_ms)} ms, p99 ${ms(r.ttft.p99_ms)} ms`);
  if (r.server_peak_rss_bytes) notes.push(`server peak RSS ${mib(r.server_peak_rss_bytes)}`);
  if (r.generator_cpu_pct !== undefined) notes.push(`CPU ${r.server_cpu_pct === undefined ? '' : `server ${num(r.server_cpu_pct)}% / `}generator ${num(r.generator_cpu_pct)}% of a core`);
  if (notes.length) f.notes = notes.join('; ');
  return f;
}

/** Adds a baseline and its ratio to a figure (higher is better unless lowerIsBetter). */
export function withBaseline(f: Figure, baseline: Figure | undefined, target?: { min?: number; maxDelta?: number; text: string }): Figure {
  if (!baseline || baseline.value <= 0) return target ? { ...f, target: target.text } : f;
  const out: Figure = { ...f, baseline: { name: baseline.name, value: baseline.value }, ratio: Math.round((f.value / baseline.value) * 1000) / 1000 };
  if (target) {
    out.target = target.text;
    if (target.min !== undefined) out.pass = out.ratio! >= target.min;
  }
  return out;
}

/** A figure for a profile that could not run: value 0 and the reason, so the report shows the gap. */
export function failedFigure(name: string, err: unknown): Figure {
  const msg = err instanceof Error ? err.message : String(err);
  return { name, value: 0, unit: 'n/a', notes: `did not run: ${msg.split('\n')[0]!.slice(0, 300)}` };
}

/** What a bench script gives writeResult: schema, date and host are filled in when missing. */
export interface ResultInput {
  suite: string;
  title: string;
  command: string;
  figures: Figure[];
  runs?: RunResult[];
  date?: string;
  host?: BenchResult['host'];
  [extra: string]: unknown;
}

export function makeResult(r: ResultInput): BenchResult {
  return { ...r, schema: 'tabagent-bench/1', date: r.date ?? new Date().toISOString(), host: r.host ?? hostFacts() };
}

/** Writes bench/results/<suite>.json (fills schema, date and host when missing); returns the path. */
export function writeResult(r: ResultInput, dir = resultsDir()): string {
  const full = makeResult(r);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${full.suite}.json`);
  writeFileSync(file, JSON.stringify(full, null, 2) + '\n');
  return file;
}

export function readResults(dir = resultsDir()): { results: BenchResult[]; skipped: string[] } {
  const results: BenchResult[] = [];
  const skipped: string[] = [];
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return { results, skipped };
  }
  for (const f of files) {
    try {
      const r = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as BenchResult;
      if (r.schema !== 'tabagent-bench/1' || !Array.isArray(r.figures)) throw new Error('not a tabagent-bench/1 result (schema, figures)');
      results.push(r);
    } catch (err) {
      skipped.push(`${f}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { results, skipped };
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function value(f: Figure): string {
  if (f.unit === 'n/a') return 'not run';
  const digits = f.value >= 100 ? 0 : f.value >= 10 ? 1 : 3;
  return `${num(f.value, digits)} ${f.unit}`;
}

/** The figures of one result as a markdown table. */
export function figuresTable(figures: Figure[]): string {
  const head = '| Figure | Value | p50 / p99 ms | Baseline | Ratio | Target | Notes |';
  const rows = figures.map((f) =>
    [
      cell(f.name),
      value(f),
      f.p50_ms !== undefined || f.p99_ms !== undefined ? `${ms(f.p50_ms)} / ${ms(f.p99_ms)}` : '',
      f.baseline ? `${cell(f.baseline.name)}: ${num(f.baseline.value, f.baseline.value >= 100 ? 0 : 2)}` : '',
      f.ratio !== undefined ? `${f.ratio.toFixed(2)}x` : '',
      f.target ? `${cell(f.target)}${f.pass === true ? ' ✅' : f.pass === false ? ' ❌' : ''}` : '',
      cell(f.notes ?? ''),
    ].join(' | '),
  );
  return [head, '|---|---|---|---|---|---|---|', ...rows.map((r) => `| ${r} |`)].join('\n');
}

/** Preferred order of suites in BENCHMARKS.md; others follow alphabetically. */
const ORDER = ['harness', 'bus', 'http', 'native', 'webrtc', 'storage', 'inference-engine', 'inference-pool', 'soak'];

/** BENCHMARKS.md: every figure with its command, the core count and the date. */
export function renderBenchmarks(results: BenchResult[], skipped: string[] = [], now = new Date()): string {
  const sorted = [...results].sort((a, b) => {
    const ia = ORDER.indexOf(a.suite), ib = ORDER.indexOf(b.suite);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.suite.localeCompare(b.suite);
  });
  const out: string[] = [
    '# Benchmarks',
    '',
    `Generated by \`npm run bench:report\` on ${now.toISOString()} from \`bench/results/*.json\`; do not edit by hand.`,
    'Each section names the command that produced it, the date it ran and the machine (cores). Timings on a shared',
    'machine are noisy: compare a figure with the baseline measured in the same run (the Ratio column), not across runs.',
    '',
  ];
  if (sorted.length === 0) out.push('No results yet: run `npm run bench -- suite` (and the per-transport bench scripts), then `npm run bench:report`.', '');
  out.push('| Suite | Figures | Targets met | Date | Cores | CPU | Node |', '|---|---|---|---|---|---|---|');
  for (const r of sorted) {
    const judged = r.figures.filter((f) => f.pass !== undefined);
    const met = judged.length === 0 ? '' : `${judged.filter((f) => f.pass).length} of ${judged.length}`;
    out.push(`| [${cell(r.title)}](#${anchor(r.title)}) | ${r.figures.length} | ${met} | ${r.date.slice(0, 16).replace('T', ' ')} | ${r.host.cores} | ${cell(r.host.cpu)} | ${r.host.node} |`);
  }
  out.push('');
  for (const r of sorted) {
    out.push(`## ${r.title}`, '', `Command: \`${r.command}\`  `, `Date: ${r.date} · ${r.host.cores} cores (${r.host.cpu}) · ${r.host.platform} · Node ${r.host.node} · ${mib(r.host.total_mem_bytes)} RAM`, '');
    out.push(figuresTable(r.figures), '');
    if (r.runs && r.runs.length > 0) out.push('<details><summary>All runs</summary>', '', runsTable(r.runs), '', '</details>', '');
  }
  if (skipped.length) out.push('## Result files not understood', '', ...skipped.map((s) => `- ${s}`), '');
  return out.join('\n');
}

function anchor(title: string): string {
  return title.toLowerCase().replace(/[^a-z0-9 -]/g, '').trim().replace(/ /g, '-');
}

/** Rewrites BENCHMARKS.md from bench/results/*.json; returns the path and how many suites it holds. */
export function writeBenchmarks(file = path.join(repoRoot(), 'BENCHMARKS.md'), dir = resultsDir()): { file: string; suites: number; skipped: string[] } {
  const { results, skipped } = readResults(dir);
  writeFileSync(file, renderBenchmarks(results, skipped));
  return { file, suites: results.length, skipped };
}
