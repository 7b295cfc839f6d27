/** `npm run bench` / `tabagent bench`: run named profiles, the standard suite, a soak, or rewrite BENCHMARKS.md. */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadRegistry } from './harness/registry.js';
import { BENCH_EXTENSION_ID } from './harness/profiles/native.js';
import { figureOf, makeResult, runsTable, writeBenchmarks, writeResult, figuresTable } from './harness/report.js';
import { runLoad } from './harness/runner.js';
import { runSoak } from './harness/soak.js';
import { runBusSuite, runTransportSuite } from './harness/suite.js';
import { cleanupModels, noServer, startServer, urlTarget, type StartedTarget } from './harness/target.js';
import type { LoadOptions, Profile, RunResult, ServerMode, Target } from './harness/types.js';

const HELP = `Usage: npm run bench -- <command|profile...> [options]     (also: tabagent bench ...)

Commands:
  help                      this text
  list                      profiles known (built-in and plugged in by bench/<transport>.ts)
  suite                     every transport beside its baseline, one server; writes bench/results/{bus,harness}.json
  soak                      minutes of mixed open-loop load; RSS and open-fd slopes; writes bench/results/soak.json
  report                    rewrite BENCHMARKS.md from bench/results/*.json
  <profile> [<profile>...]  run these profiles (see list) and print a table

Load options:
  -c, --concurrency N       clients (closed loop: requests in flight)             [profile default]
                            a list (-c 1,8,64) runs each profile once per value: a sweep
  -n, --requests N          stop after N measured requests
  -d, --duration S          ... or after S seconds                                [5]
      --rate R              open loop: R arrivals per second; latency counts from each intended send time
                            a list (--rate 500,1000,2000) sweeps the rate to find where latency turns
      --warmup S            seconds of warm-up before measuring                    [1]
      --timeout MS          a request not answered in MS is a TIMEOUT error         [30000]
Target:
      --url URL             a running server (loopback only) instead of starting one
      --model ID            the model id to use with --url
      --server-mode MODE    mode of the server the harness starts                  [all]
      --model-size S        synthetic model: tiny | small | medium                 [medium]
      --model-type T        f32 | q8_0                                             [q8_0]
Output:
      --json                print the results as JSON on stdout (instead of the table)
      --save SUITE          also write bench/results/SUITE.json
      --no-progress         no progress line on stderr
Suite / soak:
      --only G1,G2          suite groups: bus, http, ws, webrtc, native, storage, inference
      --rounds N            suite: run each baseline and its subjects alternately N times, keep the median  [3]
      --minutes M           soak length                                            [5]
      --rate-scale X        soak: multiply every stream's rate                      [1]
`;

const options = {
  concurrency: { type: 'string', short: 'c' },
  requests: { type: 'string', short: 'n' },
  duration: { type: 'string', short: 'd' },
  rate: { type: 'string' },
  warmup: { type: 'string' },
  timeout: { type: 'string' },
  url: { type: 'string' },
  model: { type: 'string' },
  'server-mode': { type: 'string' },
  'model-size': { type: 'string' },
  'model-type': { type: 'string' },
  json: { type: 'boolean' },
  save: { type: 'string' },
  'no-progress': { type: 'boolean' },
  only: { type: 'string' },
  minutes: { type: 'string' },
  'rate-scale': { type: 'string' },
  rounds: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = { [K in keyof typeof options]?: (typeof options)[K]['type'] extends 'boolean' ? boolean : string };

function positive(flags: Flags, key: keyof Flags, fallback?: number): number | undefined {
  const raw = flags[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${key} must be a positive number; got '${raw}'`);
  return n;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** The command line as run, for the report. */
function commandLine(argv: string[]): string {
  return ['npm run bench --', ...argv].join(' ');
}

async function targetFor(profiles: Profile[], flags: Flags): Promise<{ target: Target; server?: StartedTarget }> {
  if (flags.url) return { target: await urlTarget(flags.url, flags.model) };
  if (profiles.every((p) => p.needs?.server === false)) return { target: noServer() };
  const model = profiles.some((p) => p.needs?.model) ? modelSpec(flags) : false;
  const mode = (flags['server-mode'] ?? 'all') as ServerMode;
  log(`starting a server (mode ${mode}${model ? `, ${model.size} ${model.type} synthetic model` : ''})...`);
  const server = await startServer({ mode, model, env: { TABAGENT_EXTENSION_IDS: BENCH_EXTENSION_ID, TABAGENT_LOG_LEVEL: 'info' } });
  log(`server pid ${server.pid} at ${server.url}`);
  return { target: server, server };
}

function modelSpec(flags: Flags): { size: 'tiny' | 'small' | 'medium'; type: 'f32' | 'q8_0' } {
  const size = flags['model-size'] ?? 'medium';
  const type = flags['model-type'] ?? 'q8_0';
  if (!['tiny', 'small', 'medium'].includes(size)) throw new Error(`--model-size must be tiny, small or medium; got '${size}'`);
  if (!['f32', 'q8_0'].includes(type)) throw new Error(`--model-type must be f32 or q8_0; got '${type}'`);
  process.env['TABAGENT_BENCH_MODEL_SIZE'] = size;
  process.env['TABAGENT_BENCH_MODEL_TYPE'] = type;
  return { size: size as 'tiny', type: type as 'f32' };
}

function warmup(flags: Flags): number {
  const w = flags.warmup === undefined ? 1 : Number(flags.warmup);
  if (!(w >= 0)) throw new Error(`--warmup must be a number of seconds >= 0; got '${flags.warmup}'`);
  return w;
}

/** A positive number, or a comma-separated list of them (a sweep). */
function positiveList(flags: Flags, key: 'concurrency' | 'rate'): number[] | undefined {
  const raw = flags[key];
  if (raw === undefined) return undefined;
  return raw.split(',').map((part) => {
    const n = Number(part.trim());
    const whole = key === 'concurrency';
    if (part.trim() === '' || !Number.isFinite(n) || n <= 0 || (whole && !Number.isInteger(n))) throw new Error(`--${key} must be a positive ${whole ? 'whole ' : ''}number or a comma-separated list of them; got '${raw}'`);
    return n;
  });
}

/** The load of each run: one, or one per --concurrency / --rate value of a sweep (every combination). */
function loadOptions(flags: Flags): Partial<LoadOptions>[] {
  const o: Partial<LoadOptions> = {};
  const n = positive(flags, 'requests');
  if (n !== undefined) o.requests = Math.floor(n);
  const d = positive(flags, 'duration');
  if (d !== undefined) o.durationS = d;
  o.warmupS = warmup(flags);
  const t = positive(flags, 'timeout');
  if (t !== undefined) o.timeoutMs = t;
  if (flags['no-progress']) o.progress = 'off';
  const clients: (number | undefined)[] = positiveList(flags, 'concurrency') ?? [undefined];
  const rates: (number | undefined)[] = positiveList(flags, 'rate') ?? [undefined];
  return clients.flatMap((c) =>
    rates.map((r) => ({ ...o, ...(c !== undefined ? { concurrency: c } : {}), ...(r !== undefined ? { mode: 'open' as const, rate: r } : {}) })),
  );
}

async function runProfiles(names: string[], flags: Flags, argv: string[]): Promise<number> {
  const builtin = await loadRegistry(false);
  const registry = names.every((n) => builtin.profiles.has(n)) ? builtin : await loadRegistry(true);
  for (const p of registry.problems) log(`plug-in problem: ${p}`);
  const unknown = names.filter((n) => !registry.profiles.has(n));
  if (unknown.length) throw new Error(`unknown profile${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${[...registry.profiles.keys()].join(', ')}`);
  const profiles = names.map((n) => registry.profiles.get(n)!);
  const load = loadOptions(flags);
  const { target, server } = await targetFor(profiles, flags);
  const runs: RunResult[] = [];
  let failures = 0;
  try {
    for (const p of profiles) {
      for (const l of load) {
        try {
          runs.push(await runLoad(p, p.needs?.server === false && !p.own ? { ...noServer(), ...(target.model ? { model: target.model } : {}) } : target, l));
        } catch (err) {
          failures++;
          log(err instanceof Error ? err.message : String(err));
        }
      }
    }
  } finally {
    if (server) {
      const code = await server.stop();
      if (code !== 0) log(`the server exited with code ${code}; its last lines:\n${server.stderrTail()}`);
    }
    cleanupModels();
  }
  if (flags.json) process.stdout.write(JSON.stringify(makeResult({ suite: flags.save ?? 'adhoc', title: 'Ad-hoc run', command: commandLine(argv), figures: runs.map((r) => figureOf(r)), runs }), null, 2) + '\n');
  else if (runs.length) process.stdout.write(`\n${runsTable(runs)}\n\n${os.availableParallelism()} cores, ${new Date().toISOString()}\n`);
  for (const r of runs) for (const [code, msg] of Object.entries(r.error_samples)) log(`${r.profile}: ${code} e.g. ${msg}`);
  if (flags.save) log(`wrote ${writeResult({ suite: flags.save, title: `Profiles: ${names.join(', ')}`, command: commandLine(argv), figures: runs.map((r) => figureOf(r)), runs })}`);
  return failures > 0 ? 1 : 0;
}

async function runSuiteCommand(flags: Flags, argv: string[]): Promise<number> {
  const only = flags.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const suite = {
    durationS: positive(flags, 'duration', 3)!,
    warmupS: warmup(flags),
    rounds: Math.floor(positive(flags, 'rounds', 3)!),
    command: commandLine(argv),
    progress: flags['no-progress'] ? ('off' as const) : ('auto' as const),
    log,
    ...(only ? { only } : {}),
  };
  if (!only || only.includes('bus')) {
    const bus = await runBusSuite(suite);
    log(`wrote ${writeResult(bus)}`);
    process.stdout.write(`\n## ${bus.title}\n\n${figuresTable(bus.figures)}\n`);
  }
  if (only && only.every((g) => g === 'bus')) return 0;
  const wantsModel = !only || only.includes('inference');
  const { target, server } = flags.url
    ? { target: await urlTarget(flags.url, flags.model), server: undefined }
    : await targetFor([{ needs: { model: wantsModel } } as Profile], flags);
  try {
    const result = await runTransportSuite(target, suite);
    log(`wrote ${writeResult(result)}`);
    process.stdout.write(`\n## ${result.title}\n\n${figuresTable(result.figures)}\n\n${os.availableParallelism()} cores, ${result.date}\n`);
  } finally {
    if (server) await server.stop();
    cleanupModels();
  }
  return 0;
}

async function runSoakCommand(flags: Flags, argv: string[]): Promise<number> {
  const minutes = positive(flags, 'minutes', 5)!;
  const { target, server } = flags.url ? { target: await urlTarget(flags.url, flags.model), server: undefined } : await targetFor([{ needs: { model: true } } as Profile], flags);
  try {
    const result = await runSoak(target, { minutes, rateScale: positive(flags, 'rate-scale', 1)!, sampleMs: 2000, command: commandLine(argv), log });
    log(`wrote ${writeResult(result)}`);
    process.stdout.write(`\n## ${result.title}\n\n${figuresTable(result.figures)}\n`);
    return result.figures.some((f) => f.pass === false) ? 2 : 0;
  } finally {
    if (server) await server.stop();
    cleanupModels();
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    log(`tabagent bench: ${(err as Error).message}\n\n${HELP}`);
    return 64;
  }
  const flags = parsed.values as Flags;
  const [command, ...rest] = parsed.positionals;
  if (flags.help || !command || command === 'help') {
    process.stdout.write(HELP);
    return command === 'help' || flags.help ? 0 : 64;
  }
  try {
    switch (command) {
      case 'list': {
        const reg = await loadRegistry(true);
        for (const p of reg.profiles.values()) process.stdout.write(`${p.name.padEnd(22)} ${p.transport.padEnd(9)} ${p.description}${p.source === 'harness' ? '' : `  [${p.source}]`}\n`);
        for (const p of reg.problems) log(`plug-in problem: ${p}`);
        return 0;
      }
      case 'report': {
        const r = writeBenchmarks();
        for (const s of r.skipped) log(`skipped ${s}`);
        log(`wrote ${r.file} (${r.suites} suites)`);
        return 0;
      }
      case 'suite':
        return await runSuiteCommand(flags, argv);
      case 'soak':
        return await runSoakCommand(flags, argv);
      default:
        return await runProfiles([command, ...rest], flags, argv);
    }
  } catch (err) {
    log(`tabagent bench: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
  // Handles of finished peers or children must not keep a finished run alive.
  setTimeout(() => process.exit(process.exitCode), 500).unref();
}
