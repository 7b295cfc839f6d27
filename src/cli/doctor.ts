/** `tabagent doctor`: checks an installation (Node, llama.cpp binaries, GPU, ports, data dir, native hosts, a running server) and says how to fix each failure. */
import { existsSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../runtime/config.js';
import { storeDir } from '../runtime/storage/open.js';
import { Browsers, HOST_NAME, hostDir } from '../transports/native/install.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warning or a failure. */
  fix?: string;
}

/** Below this, pulling or even loading a model is likely to fail; the store itself needs little. */
export const MIN_FREE_BYTES = 1024 ** 3;
const MIN_NODE_MAJOR = 20;

export interface DoctorOptions {
  config: Config;
  /** The config file given with --config, so fixes can repeat it. */
  configFile?: string;
  home?: string;
  /** Skip loading llama.cpp (it takes a second or two and a little memory). */
  skipLlama?: boolean;
  fetchTimeoutMs?: number;
}

const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

export function checkNode(version = process.versions.node): CheckResult {
  const major = Number(version.split('.')[0]);
  return major >= MIN_NODE_MAJOR
    ? { name: 'node', status: 'ok', detail: `Node.js ${version}` }
    : { name: 'node', status: 'fail', detail: `Node.js ${version} is too old`, fix: `install Node.js ${MIN_NODE_MAJOR} or newer (nodejs.org, or your package manager), then run npm install again` };
}

/** Loads llama.cpp's binaries as the server would, and reports which build and which GPU backend they bring. */
export async function checkLlama(): Promise<CheckResult[]> {
  try {
    const { getLlama, getLlamaGpuTypes, LlamaLogLevel } = await import('node-llama-cpp');
    // 'never': a doctor reports what is there; it must not start a build of llama.cpp from source.
    const llama = await getLlama({ gpu: 'auto', build: 'never', logLevel: LlamaLogLevel.error });
    const supported = await getLlamaGpuTypes('supported');
    const build = llama.buildType === 'localBuild' ? 'a local build (tabagent build-llama)' : 'the prebuilt binaries';
    const results: CheckResult[] = [{ name: 'llama.cpp', status: 'ok', detail: `loads ${build}; CPU ${llama.cpuMathCores} math cores` }];
    if (llama.gpu === false) {
      results.push({
        name: 'gpu',
        status: 'warn',
        detail: `no GPU in use: inference runs on the CPU (GPU backends usable on this machine: ${supported.filter((g) => g !== false).join(', ') || 'none'})`,
        fix: 'nothing to do without a GPU; with an NVIDIA card install its driver (and CUDA runtime), on Linux with another card install Vulkan drivers; see docs/tuning.md',
      });
    } else {
      const vram = await llama.getVramState();
      results.push({ name: 'gpu', status: 'ok', detail: `${llama.gpu}: ${(await llama.getGpuDeviceNames()).join(', ')}; ${gib(vram.free)} free of ${gib(vram.total)}` });
    }
    await llama.dispose();
    return results;
  } catch (err) {
    return [
      {
        name: 'llama.cpp',
        status: 'fail',
        detail: `llama.cpp's binaries do not load: ${(err as Error).message}`,
        fix: 'run npm install again in the server directory (it installs the prebuilt binaries for this platform); after a failed `tabagent build-llama`, remove node_modules/node-llama-cpp/llama/localBuilds',
      },
    ];
  }
}

/** Whether something answers like a TabAgent server at this address. */
async function probeServer(url: string, timeoutMs: number): Promise<{ version?: string; ready?: { ready: boolean; checks: Record<string, unknown> } } | undefined> {
  try {
    const health = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!health.ok) return undefined;
    const body = (await health.json()) as { status?: string; version?: string };
    if (body.status === undefined) return undefined;
    const out: { version?: string; ready?: { ready: boolean; checks: Record<string, unknown> } } = {};
    if (body.version) out.version = body.version;
    const ready = await fetch(`${url}/v1/health/ready`, { signal: AbortSignal.timeout(timeoutMs) }).catch(() => undefined);
    if (ready) out.ready = (await ready.json().catch(() => undefined)) as { ready: boolean; checks: Record<string, unknown> };
    return out;
  } catch {
    return undefined;
  }
}

function portFree(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host);

async function checkPort(name: string, flag: string, host: string, port: number, timeoutMs: number): Promise<CheckResult> {
  if (port === 0) return { name, status: 'ok', detail: 'port 0: the system picks a free port at start' };
  const err = await portFree(host, port);
  if (!err) return { name, status: 'ok', detail: `${host}:${port} is free` };
  if (err.code === 'EADDRINUSE') {
    // A running TabAgent server holds its own ports: that is fine, and the server check says more.
    if (await probeServer(`http://${urlHost(host)}:${port}`, timeoutMs)) return { name, status: 'ok', detail: `${host}:${port} is held by a running TabAgent server` };
    if (name === 'webrtc port') {
      const probe = await fetch(`http://${urlHost(host)}:${port}/v1/health`, { signal: AbortSignal.timeout(timeoutMs) }).catch(() => undefined);
      if (probe?.ok) return { name, status: 'ok', detail: `${host}:${port} is held by a running TabAgent server's signalling` };
    }
    return { name, status: 'fail', detail: `${host}:${port} is in use by another program`, fix: `stop that program (find it with: ss -ltnp 'sport = :${port}') or give the server another port with ${flag}` };
  }
  if (err.code === 'EADDRNOTAVAIL') return { name, status: 'fail', detail: `${host} is not an address of this machine`, fix: 'set --host to one of this machine\'s addresses (127.0.0.1 by default)' };
  if (err.code === 'EACCES') return { name, status: 'fail', detail: `no permission to listen on ${host}:${port}`, fix: `ports below 1024 need privileges; use ${flag} with a port of 1024 or above` };
  return { name, status: 'fail', detail: `cannot listen on ${host}:${port}: ${err.message}`, fix: `check --host and ${flag}` };
}

/** The data dir exists or can be made, is writable, has room, and its store is not held by a process other than a reachable server. */
async function checkDataDir(dataDir: string, serverUp: boolean): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  try {
    mkdirSync(dataDir, { recursive: true });
    const probe = path.join(dataDir, `.doctor-${process.pid}`);
    writeFileSync(probe, 'ok');
    rmSync(probe);
    results.push({ name: 'data dir', status: 'ok', detail: `${dataDir} is writable` });
  } catch (err) {
    results.push({
      name: 'data dir',
      status: 'fail',
      detail: `${dataDir} is not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      fix: `give your user write access to it (chown/chmod), or choose another with --data-dir or TABAGENT_DATA_DIR`,
    });
    return results;
  }
  const stats = statfsSync(dataDir);
  const free = stats.bavail * stats.bsize;
  results.push(
    free >= MIN_FREE_BYTES
      ? { name: 'disk', status: 'ok', detail: `${gib(free)} free under ${dataDir}` }
      : { name: 'disk', status: 'fail', detail: `only ${gib(free)} free under ${dataDir} (at least ${gib(MIN_FREE_BYTES)} wanted for models and the store)`, fix: 'free disk space, or move the data dir to a larger disk with --data-dir' },
  );
  const store = storeDir(dataDir);
  if (!existsSync(path.join(store, 'CURRENT'))) {
    results.push({ name: 'store', status: 'ok', detail: `no conversation store yet; the server creates ${store} at its first start` });
    return results;
  }
  const { Level } = await import('level');
  const db = new Level(store, { createIfMissing: false });
  try {
    await db.open();
    await db.close();
    results.push({ name: 'store', status: 'ok', detail: `${store} opens and is not locked` });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    if (/lock/i.test(cause)) {
      results.push(
        serverUp
          ? { name: 'store', status: 'ok', detail: `${store} is held by the running server` }
          : { name: 'store', status: 'fail', detail: `${store} is locked by a process that does not answer as a server`, fix: 'stop the other tabagent process using this data dir (ps aux | grep tabagent), or use another --data-dir' },
      );
    } else {
      results.push({ name: 'store', status: 'fail', detail: `${store} does not open: ${cause}`, fix: 'stop the server, then run `tabagent db repair` (it keeps what is readable)' });
    }
  }
  return results;
}

/** Each browser's native-messaging manifest, if any, must point at a launcher that runs this install. */
export function checkNativeHosts(config: Config, home?: string, configFile?: string): CheckResult {
  const hostMain = fileURLToPath(new URL('../transports/native/host-main.js', import.meta.url));
  const installed: string[] = [];
  const problems: string[] = [];
  for (const browser of Browsers) {
    const manifestFile = path.join(hostDir(browser, home === undefined ? {} : { home }), `${HOST_NAME}.json`);
    if (!existsSync(manifestFile)) continue;
    let launcher: string;
    try {
      launcher = String((JSON.parse(readFileSync(manifestFile, 'utf8')) as { path?: unknown }).path ?? '');
    } catch {
      problems.push(`${browser}: ${manifestFile} is not valid JSON`);
      continue;
    }
    if (!existsSync(launcher)) {
      problems.push(`${browser}: the manifest's launcher ${launcher} is missing`);
      continue;
    }
    const text = readFileSync(launcher, 'utf8');
    if (!text.includes(hostMain)) problems.push(`${browser}: the launcher runs another install (not ${hostMain})`);
    else if (!text.includes(path.resolve(config.data_dir))) problems.push(`${browser}: the launcher relays to another data dir than ${config.data_dir}`);
    else installed.push(browser);
  }
  const reinstall = `tabagent install-native-host --browser BROWSER --extension-id ID${configFile ? ` --config ${configFile}` : ''}`;
  if (problems.length) return { name: 'native host', status: 'fail', detail: problems.join('; '), fix: `reinstall it for that browser: ${reinstall}` };
  if (installed.length === 0) return { name: 'native host', status: 'warn', detail: 'not installed for any browser: the extension can reach the server over HTTP or WebRTC only', fix: `to use native messaging: ${reinstall}` };
  return { name: 'native host', status: 'ok', detail: `installed for ${installed.join(', ')}, pointing at this install` };
}

export async function runDoctor(opts: DoctorOptions): Promise<CheckResult[]> {
  const { config } = opts;
  const timeoutMs = opts.fetchTimeoutMs ?? 2000;
  const results: CheckResult[] = [checkNode()];
  if (!opts.skipLlama) results.push(...(await checkLlama()));
  const http = config.mode !== 'native' && config.mode !== 'webrtc';
  const webrtc = config.mode === 'webrtc' || config.mode === 'all';
  const url = `http://${urlHost(config.host)}:${config.port}`;
  const server = http ? await probeServer(url, timeoutMs) : undefined;
  if (http) results.push(await checkPort('http port', '--port', config.host, config.port, timeoutMs));
  if (webrtc) results.push(await checkPort('webrtc port', '--webrtc-port', config.host, config.webrtc_port, timeoutMs));
  results.push(...(await checkDataDir(config.data_dir, server !== undefined)));
  results.push(checkNativeHosts(config, opts.home, opts.configFile));
  if (!http) results.push({ name: 'server', status: 'ok', detail: `mode ${config.mode} has no HTTP listener to ask` });
  else if (config.port === 0) results.push({ name: 'server', status: 'ok', detail: 'port 0 is configured: a running server could be on any port, so none is looked for' });
  else if (!server) results.push({ name: 'server', status: 'warn', detail: `no TabAgent server answers at ${url}`, fix: 'start one with `tabagent serve`, or at login with `tabagent install-service`' });
  else if (server.ready && !server.ready.ready) {
    const failing = Object.entries(server.ready.checks ?? {}).filter(([, v]) => v === false || (typeof v === 'object' && v !== null && (v as { ok?: boolean }).ok === false)).map(([k]) => k);
    results.push({ name: 'server', status: 'fail', detail: `the server at ${url} is up but not ready (failing: ${failing.join(', ') || 'unknown'})`, fix: 'its log says why (journalctl --user -u tabagent, or its stderr); docs/troubleshooting.md lists each check' });
  } else results.push({ name: 'server', status: 'ok', detail: `TabAgent ${server.version ?? ''} answers at ${url}`.replace('  ', ' ') });
  return results;
}

const marks: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

export function formatResults(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = results.map((r) => `${marks[r.status]}  ${r.name.padEnd(width)}  ${r.detail}${r.fix ? `\n      ${''.padEnd(width)}  fix: ${r.fix}` : ''}`);
  const failed = results.filter((r) => r.status === 'fail').length;
  lines.push(failed ? `${failed} check${failed > 1 ? 's' : ''} failed` : 'all checks passed');
  return lines.join('\n') + '\n';
}
