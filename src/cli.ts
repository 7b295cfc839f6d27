#!/usr/bin/env node
/** The `tabagent` command line: serve, config print, and the tools around the server. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cac } from 'cac';
import { ConfigStore, describeConfig, loadConfig, Modes, type LoadOptions } from './runtime/config.js';
import { createLogger } from './runtime/logger.js';
import { version } from './runtime/version.js';
import { TabAgentError } from './protocol/errors.js';
import { startServer } from './server.js';
import './transports/register.js';

const cli = cac('tabagent');

interface ServeFlags {
  mode?: string;
  host?: string;
  port?: number;
  webrtcPort?: number;
  dataDir?: string;
  model?: string | string[];
  config?: string;
  logLevel?: string;
  logFormat?: string;
  stdio?: boolean;
}

function list(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** Flags map onto config keys; only flags actually given take part in the precedence. */
function loadOptions(flags: ServeFlags): LoadOptions {
  const opts: LoadOptions = {
    flags: {
      mode: flags.mode,
      host: flags.host,
      port: flags.port,
      webrtc_port: flags.webrtcPort,
      data_dir: flags.dataDir,
      models: list(flags.model),
      log_level: flags.logLevel,
      log_format: flags.logFormat,
      'native.stdio': flags.stdio === false ? false : undefined,
    },
  };
  if (flags.config) opts.file = flags.config;
  return opts;
}

/** A startup failure is one clear line on stderr and exit code 1, never a stack trace. */
function fail(err: unknown): never {
  const message = err instanceof TabAgentError ? err.message : err instanceof Error ? err.message : String(err);
  process.stderr.write(`tabagent: ${message}\n`);
  process.exit(1);
}

cli
  .command('[serve]', 'Start the server (the default command)')
  .alias('serve')
  .option('--mode <mode>', `Transports to run: ${Modes.join(' | ')} (default: all)`)
  .option('--host <host>', 'Address to listen on (default: 127.0.0.1; never all interfaces unless asked)')
  .option('--port <port>', 'HTTP and WebSocket port (default: 3000, env TABAGENT_PORT)')
  .option('--webrtc-port <port>', 'WebRTC signalling port (default: 8002)')
  .option('--data-dir <dir>', 'Data directory (database, models, IPC socket)')
  .option('--model <path>', 'Preload a GGUF model (repeatable)')
  .option('--config <file>', 'Config file (.toml, .yaml or .yml)')
  .option('--log-level <level>', 'trace | debug | info | warn | error | fatal | silent')
  .option('--log-format <format>', 'json | pretty | auto (pretty on a terminal); default json')
  .option('--no-stdio', 'In native modes, do not read native-messaging frames on stdin (for a server started in the background)')
  .action(async (command: string | undefined, flags: ServeFlags) => {
    if (command !== undefined && command !== 'serve') fail(new TabAgentError('BAD_REQUEST', `unknown command '${command}'; see tabagent --help`));
    let store: ConfigStore;
    try {
      const opts = loadOptions(flags);
      store = new ConfigStore(loadConfig(opts), opts);
    } catch (err) {
      fail(err);
    }
    // Worker threads copy the environment at their start, so this is how their loggers learn the format.
    process.env['TABAGENT_LOG_FORMAT'] = store.config.log_format;
    const log = createLogger(store.config.log_level, undefined, store.config.log_format);
    store.onChange((change) => {
      if (change.applied.includes('log_level')) log.setLevel(change.config.log_level);
      if (change.applied.length) log.info('config reloaded', { applied: change.applied });
      if (change.needsRestart.length) log.warn('config change needs a restart to take effect', { keys: change.needsRestart });
    });
    store.watch((err) => log.error('config file change ignored: it does not validate', { err: err.message }));

    let server;
    try {
      server = await startServer(store, log);
    } catch (err) {
      log.error('failed to start', { err });
      fail(err);
    }
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        log.warn('second signal: exiting now', { signal });
        process.exit(1);
      }
      void server.stop(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const drainMs = store.config.shutdown.drain_timeout_ms;
    await server.stopped;
    store.close();
    // Everything is closed; anything still pending (a stuck native handle) must not keep the process alive.
    setTimeout(() => process.exit(0), Math.min(drainMs, 1000)).unref();
    process.exitCode = 0;
  });

cli
  .command('config <action>', 'config print: the effective configuration and where each value came from')
  .option('--config <file>', 'Config file (.toml, .yaml or .yml)')
  .option('--json', 'Print JSON instead of a table')
  .action((action: string, flags: ServeFlags & { json?: boolean }) => {
    try {
      if (action !== 'print') throw new TabAgentError('BAD_REQUEST', `unknown config action '${action}' (try: tabagent config print)`);
      const resolved = loadConfig(loadOptions(flags));
      const rows = describeConfig(resolved);
      if (flags.json) process.stdout.write(JSON.stringify({ config: resolved.config, sources: resolved.sources }, null, 2) + '\n');
      else {
        const width = Math.max(...rows.map((r) => r.key.length));
        for (const r of rows) process.stdout.write(`${r.key.padEnd(width)}  ${JSON.stringify(r.value)}  (${r.source})\n`);
      }
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('make-test-model <out>', 'Write a synthetic llama GGUF (random weights, byte-fallback tokenizer, ChatML template) for tests and benchmarks')
  .option('--size <size>', 'tiny | small | medium (medium = the 25.6M-parameter reference model of the benchmarks)', { default: 'tiny' })
  .option('--type <type>', 'f32 | q8_0', { default: 'f32' })
  .option('--seed <n>', 'Weights seed: the same seed, size and type give a byte-identical file', { default: 1 })
  .action(async (out: string, flags: { size: string; type: string; seed: number }) => {
    try {
      const { writeTestModel, readGgufMetadata } = await import('./runtime/gguf/index.js');
      if (!['tiny', 'small', 'medium'].includes(flags.size)) throw new TabAgentError('VALIDATION_ERROR', `--size must be tiny, small or medium, not '${flags.size}'`);
      if (!['f32', 'q8_0'].includes(flags.type)) throw new TabAgentError('VALIDATION_ERROR', `--type must be f32 or q8_0, not '${flags.type}'`);
      if (!Number.isInteger(Number(flags.seed))) throw new TabAgentError('VALIDATION_ERROR', `--seed must be an integer, not '${flags.seed}'`);
      await writeTestModel(out, { size: flags.size as 'tiny', type: flags.type as 'f32', seed: Number(flags.seed) });
      const meta = await readGgufMetadata(out);
      process.stdout.write(`wrote ${out}: ${meta.architecture}, ${meta.parameters} parameters, ${meta.quantization}, ${meta.file_size} bytes\n`);
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('build-llama', 'Build llama.cpp for this CPU from the source node-llama-cpp ships (offline, minutes); batched decoding gets about twice as fast')
  .action(async () => {
    try {
      const { buildNativeLlama } = await import('./runtime/inference/native-build.js');
      await buildNativeLlama((line) => process.stdout.write(`${line}\n`));
      process.stdout.write('built: the server loads this build from its next start\n');
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('db <action>', 'db repair: rebuild a damaged conversation store from what is readable (stop the server first)')
  .option('--data-dir <dir>', 'Data directory (the store is <data-dir>/conversations)')
  .option('--config <file>', 'Config file (.toml, .yaml or .yml)')
  .action(async (action: string, flags: ServeFlags) => {
    try {
      if (action !== 'repair') throw new TabAgentError('BAD_REQUEST', `unknown db action '${action}' (try: tabagent db repair)`);
      const { repairStore, storeDir } = await import('./runtime/storage/open.js');
      const report = await repairStore(storeDir(loadConfig(loadOptions(flags)).config.data_dir));
      const lost = report.lost.length ? `; unreadable files were moved to ${report.dir}/lost: ${report.lost.join(', ')}` : '';
      process.stdout.write(`repaired ${report.dir}: ${report.sessions} sessions, ${report.messages} messages${lost}\n`);
    } catch (err) {
      fail(err);
    }
  });

interface NativeHostFlags {
  browser?: string;
  extensionId?: string | string[];
  userDataDir?: string;
  dataDir?: string;
  socket?: string;
  config?: string;
  allowExtension?: string | string[];
}

cli
  .command('native-host [...caller]', 'The native-messaging host a browser starts: relays frames to the server (starting it if needed)')
  .option('--data-dir <dir>', 'Data directory of the server to relay to')
  .option('--socket <path>', 'IPC socket of the server (default: <data-dir>/tabagent.sock)')
  .option('--config <file>', 'Config file, also given to a server this host starts')
  .option('--allow-extension <id>', 'Extension id allowed besides extension_ids in the config (repeatable)')
  .allowUnknownOptions()
  .action(async (caller: string[], flags: NativeHostFlags) => {
    // The relay is imported lazily; the launcher written by install-native-host runs host-main.js directly, which loads less.
    const { runRelay } = await import('./transports/native/relay.js');
    const argv: string[] = [];
    if (flags.dataDir) argv.push('--data-dir', String(flags.dataDir));
    if (flags.socket) argv.push('--socket', String(flags.socket));
    if (flags.config) argv.push('--config', String(flags.config));
    for (const id of list(flags.allowExtension) ?? []) argv.push('--allow-extension', id);
    const code = await runRelay([...argv, ...caller.map(String)]);
    process.stdout.write('', () => process.exit(code));
  });

cli
  .command('install-native-host', 'Register the native-messaging host (com.tabagent.host) with a browser, for this user')
  .option('--browser <name>', 'chrome | chromium | edge | brave | firefox')
  .option('--extension-id <id>', 'Extension allowed to use the host (repeatable)')
  .option('--user-data-dir <dir>', 'Install into this browser profile root (DIR/NativeMessagingHosts) instead of the per-user location')
  .option('--data-dir <dir>', 'Data directory of the server the host relays to')
  .option('--config <file>', 'Config file (.toml, .yaml or .yml)')
  .action(async (flags: NativeHostFlags) => {
    try {
      if (!flags.browser) throw new TabAgentError('VALIDATION_ERROR', '--browser is required: chrome | chromium | edge | brave | firefox');
      const { installNativeHost } = await import('./transports/native/install.js');
      const { config } = loadConfig(loadOptions(flags));
      const opts: Parameters<typeof installNativeHost>[0] = { browser: String(flags.browser), extensionIds: list(flags.extensionId) ?? [], dataDir: config.data_dir };
      if (flags.userDataDir) opts.userDataDir = String(flags.userDataDir);
      if (config.native.socket_path) opts.socketPath = config.native.socket_path;
      if (flags.config) opts.configFile = flags.config;
      const result = installNativeHost(opts);
      for (const f of result.files) process.stdout.write(`${f.action === 'written' ? 'wrote    ' : 'unchanged'} ${f.path}\n`);
      process.stdout.write(`host ${String(result.manifest['name'])} allows ${JSON.stringify(result.manifest['allowed_origins'] ?? result.manifest['allowed_extensions'])}; server data dir ${config.data_dir}\n`);
      if (result.registryCommand) process.stdout.write(`register it with:\n  ${result.registryCommand}\n`);
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('uninstall-native-host', 'Remove the native-messaging host manifest and launcher for a browser')
  .option('--browser <name>', 'chrome | chromium | edge | brave | firefox')
  .option('--user-data-dir <dir>', 'The browser profile root given at install time, if any')
  .action(async (flags: NativeHostFlags) => {
    try {
      if (!flags.browser) throw new TabAgentError('VALIDATION_ERROR', '--browser is required: chrome | chromium | edge | brave | firefox');
      const { uninstallNativeHost } = await import('./transports/native/install.js');
      const opts: Parameters<typeof uninstallNativeHost>[0] = { browser: String(flags.browser) };
      if (flags.userDataDir) opts.userDataDir = String(flags.userDataDir);
      const result = uninstallNativeHost(opts);
      for (const f of result.files) process.stdout.write(`${f.action === 'removed' ? 'removed  ' : 'absent   '} ${f.path}\n`);
      if (result.registryCommand) process.stdout.write(`remove the registry entry with:\n  ${result.registryCommand}\n`);
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('doctor', 'Check this installation: Node, llama.cpp binaries, GPU, ports, data dir, native hosts, a running server; exit 0 only when all pass')
  .option('--config <file>', 'Config file (.toml, .yaml or .yml)')
  .option('--data-dir <dir>', 'Data directory to check')
  .option('--port <port>', 'HTTP port to check')
  .option('--mode <mode>', 'Mode whose listeners to check')
  .option('--json', 'Print the checks as JSON')
  .action(async (flags: ServeFlags & { json?: boolean }) => {
    try {
      const { runDoctor, formatResults } = await import('./cli/doctor.js');
      const { config } = loadConfig(loadOptions(flags));
      const results = await runDoctor(flags.config ? { config, configFile: flags.config } : { config });
      process.stdout.write(flags.json ? JSON.stringify({ ok: results.every((r) => r.status !== 'fail'), checks: results }, null, 2) + '\n' : formatResults(results));
      process.exitCode = results.some((r) => r.status === 'fail') ? 1 : 0;
    } catch (err) {
      fail(err);
    }
  });

/** The command line a service runs: this install's CLI, serving in the background (no native-messaging stdin). */
function serviceCommand(flags: ServeFlags): string[] {
  const cliScript = fileURLToPath(import.meta.url);
  const args = [process.execPath, cliScript, 'serve', '--no-stdio'];
  if (flags.config) args.push('--config', path.resolve(flags.config));
  if (flags.dataDir) args.push('--data-dir', path.resolve(String(flags.dataDir)));
  if (flags.port !== undefined) args.push('--port', String(flags.port));
  if (flags.mode) args.push('--mode', flags.mode);
  return args;
}

function printService(result: { files: { path: string; action: string }[]; next: string[] }, intro: string): void {
  for (const f of result.files) process.stdout.write(`${f.action.padEnd(9)} ${f.path}\n`);
  if (result.next.length) process.stdout.write(`${intro}\n${result.next.map((c) => `  ${c}`).join('\n')}\n`);
}

cli
  .command('install-service', 'Start the server with your session: a systemd user unit (Linux), a launchd agent (macOS), or the logon-task command (Windows)')
  .option('--config <file>', 'Config file the service passes to the server')
  .option('--data-dir <dir>', 'Data directory the service passes to the server')
  .option('--port <port>', 'HTTP port the service passes to the server')
  .option('--mode <mode>', `Transports the service runs: ${Modes.join(' | ')}`)
  .action(async (flags: ServeFlags) => {
    try {
      const { installService } = await import('./cli/service.js');
      if (flags.config || flags.mode) loadConfig(loadOptions(flags));
      printService(installService({ command: serviceCommand(flags) }), process.platform === 'win32' ? 'register it with:' : 'enable and start it with:');
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('uninstall-service', 'Remove what install-service wrote')
  .action(async () => {
    try {
      const { uninstallService } = await import('./cli/service.js');
      printService(uninstallService({}), process.platform === 'win32' ? 'remove the task with:' : 'then:');
    } catch (err) {
      fail(err);
    }
  });

cli
  .command('bench [...args]', 'Load-test a server: profiles, suite, soak, report (tabagent bench help lists them)')
  .allowUnknownOptions()
  .action(async () => {
    // The harness is imported only here, so `serve` loads none of it; it parses its own flags.
    const { main } = await import('../bench/cli.js');
    const args = process.argv.slice(process.argv.indexOf('bench') + 1);
    process.exitCode = await main(args);
    setTimeout(() => process.exit(process.exitCode), 500).unref();
  });

cli.help();
cli.version(version);

try {
  cli.parse(process.argv, { run: false });
  await cli.runMatchedCommand();
} catch (err) {
  fail(err);
}
