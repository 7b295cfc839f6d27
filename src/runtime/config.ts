/** Configuration: defaults < file (TOML/YAML) < environment (TABAGENT_*) < CLI flags, validated with valibot, hot-reloaded where safe. */
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import * as v from 'valibot';
import { parse as parseYaml } from 'yaml';
import { TabAgentError } from '../protocol/errors.js';
import { LogFormats, LogLevels } from './logger.js';
import { defaultDataDir } from './paths.js';

export const Modes = ['native', 'http', 'webrtc', 'both', 'all'] as const;
export type Mode = (typeof Modes)[number];

const Port = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535));
const PositiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));
const NonNegativeInt = v.pipe(v.number(), v.integer(), v.minValue(0));
const StringList = v.array(v.string());

/** The one schema of the configuration: defaults, validation and the `config print` listing all come from it. */
export const ConfigSchema = v.object({
  mode: v.optional(v.picklist(Modes), 'all'),
  host: v.optional(v.pipe(v.string(), v.minLength(1)), '127.0.0.1'),
  port: v.optional(Port, 3000),
  webrtc_port: v.optional(Port, 8002),
  data_dir: v.optional(v.pipe(v.string(), v.minLength(1)), defaultDataDir()),
  /** GGUF files found here are listed by `models`; default: <data_dir>/models. */
  models_dir: v.optional(v.string(), ''),
  /** Models to load at start-up (paths or ids). */
  models: v.optional(StringList, []),
  log_level: v.optional(v.picklist(LogLevels), 'info'),
  /** json: one JSON object a line (for log collectors); pretty: readable lines; auto: pretty on a terminal, else json. */
  log_format: v.optional(v.picklist(LogFormats), 'json'),
  /** Extension ids allowed over native messaging, and as chrome-extension:// origins over HTTP and WebRTC. */
  extension_ids: v.optional(StringList, []),
  shutdown: v.optional(
    v.object({ drain_timeout_ms: v.optional(NonNegativeInt, 10_000) }),
    {},
  ),
  bus: v.optional(
    v.object({
      mailbox_capacity: v.optional(PositiveInt, 4096),
      request_timeout_ms: v.optional(NonNegativeInt, 0),
    }),
    {},
  ),
  http: v.optional(
    v.object({
      body_limit_bytes: v.optional(PositiveInt, 8 * 1024 * 1024),
      /** Exact origins allowed by CORS and the origin check (besides the extension origins). */
      cors_origins: v.optional(StringList, []),
      /** Host names accepted besides loopback ones (DNS-rebinding protection). */
      allowed_hosts: v.optional(StringList, []),
      ws_max_payload_bytes: v.optional(PositiveInt, 16 * 1024 * 1024),
      ws_max_backpressure_bytes: v.optional(PositiveInt, 4 * 1024 * 1024),
      /** A stream (SSE) whose reader falls this many bytes behind is cut; held-back text deltas merge, so this is text, not events. */
      stream_max_pending_bytes: v.optional(PositiveInt, 1024 * 1024),
      /** Serve the OpenAPI document at /openapi.json and Swagger UI at /docs. */
      docs: v.optional(v.boolean(), true),
      rate_limit_per_minute: v.optional(NonNegativeInt, 0),
    }),
    {},
  ),
  native: v.optional(
    v.object({
      /** IPC socket of the long-running server; default <data_dir>/tabagent.sock (a named pipe on Windows). */
      socket_path: v.optional(v.string(), ''),
      max_message_bytes: v.optional(PositiveInt, 64 * 1024 * 1024),
      /** Read native-messaging frames on stdin (off for a server started in the background by a relay). */
      stdio: v.optional(v.boolean(), true),
      /** How long a native-messaging relay waits for the server it started to accept connections. */
      server_start_timeout_ms: v.optional(PositiveInt, 20_000),
    }),
    {},
  ),
  webrtc: v.optional(
    v.object({
      ice_servers: v.optional(v.array(v.object({ urls: v.union([v.string(), StringList]), username: v.optional(v.string()), credential: v.optional(v.string()) })), []),
      max_sessions: v.optional(PositiveInt, 1000),
      max_sessions_per_client: v.optional(PositiveInt, 10),
      max_sessions_per_address: v.optional(PositiveInt, 50),
      idle_timeout_ms: v.optional(PositiveInt, 5 * 60_000),
      /** A session not connected this long after its offer (or disconnected this long) is closed. */
      handshake_timeout_ms: v.optional(PositiveInt, 30_000),
      /** Without trickle, how long the server waits for its ICE gathering before answering with what it has. */
      ice_gather_timeout_ms: v.optional(PositiveInt, 5_000),
      max_message_bytes: v.optional(PositiveInt, 64 * 1024 * 1024),
    }),
    {},
  ),
  inference: v.optional(
    v.object({
      /** Worker threads; 0 = derived from the cores so that workers x threads never exceeds them. */
      workers: v.optional(NonNegativeInt, 0),
      /** Threads per context; 0 = 1 (more oversubscribes small machines; see docs/tuning.md). */
      threads: v.optional(NonNegativeInt, 0),
      context_size: v.optional(PositiveInt, 4096),
      max_sequences: v.optional(PositiveInt, 8),
      /** Contexts per model per worker, each decoding on its own core (counts against the cores like workers). */
      contexts: v.optional(PositiveInt, 1),
      /** How requests are spread over workers: 'spread' (least busy) or 'pack' (fill one worker's batch first). */
      placement: v.optional(v.picklist(['spread', 'pack']), 'spread'),
      max_loaded_models: v.optional(PositiveInt, 2),
      keep_alive_s: v.optional(NonNegativeInt, 300),
      auto_load: v.optional(v.boolean(), true),
      queue_limit_interactive: v.optional(PositiveInt, 64),
      queue_limit_normal: v.optional(PositiveInt, 256),
      queue_limit_background: v.optional(PositiveInt, 1024),
      /** A queued background task is promoted one class after waiting this long. */
      aging_ms: v.optional(PositiveInt, 5_000),
    }),
    {},
  ),
  storage: v.optional(
    v.object({
      sync: v.optional(v.boolean(), true),
      max_message_bytes: v.optional(PositiveInt, 1024 * 1024),
    }),
    {},
  ),
});

export type Config = v.InferOutput<typeof ConfigSchema>;
export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

/** Keys that take effect without a restart; any other change is logged as needing one. */
export const HOT_KEYS = ['log_level', 'extension_ids', 'http.cors_origins', 'http.allowed_hosts', 'http.rate_limit_per_minute'];

type Tree = Record<string, unknown>;

export interface ResolvedConfig {
  config: Config;
  /** Where each leaf key's value came from, by dotted path. */
  sources: Record<string, ConfigSource>;
  file?: string;
}

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by dotted key (`port`, `http.body_limit_bytes`); undefined entries are ignored. */
  flags?: Tree;
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: Tree, over: Tree, source: ConfigSource, sources: Record<string, ConfigSource>, prefix = ''): Tree {
  const out: Tree = { ...base };
  for (const [k, val] of Object.entries(over)) {
    if (val === undefined) continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (isTree(val) && isTree(out[k])) out[k] = deepMerge(out[k] as Tree, val, source, sources, key);
    else {
      out[k] = val;
      markSources(key, val, source, sources);
    }
  }
  return out;
}

function markSources(key: string, val: unknown, source: ConfigSource, sources: Record<string, ConfigSource>): void {
  if (isTree(val)) for (const [k, sub] of Object.entries(val)) markSources(`${key}.${k}`, sub, source, sources);
  else sources[key] = source;
}

function setPath(tree: Tree, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = tree;
  for (const p of parts.slice(0, -1)) {
    if (!isTree(node[p])) node[p] = {};
    node = node[p] as Tree;
  }
  node[parts[parts.length - 1]!] = value;
}

/** The leaf keys of the schema with the kind of value each holds, so env strings can be coerced. */
function leafKinds(): Map<string, 'number' | 'boolean' | 'list' | 'string' | 'json'> {
  const kinds = new Map<string, 'number' | 'boolean' | 'list' | 'string' | 'json'>();
  const defaults = v.parse(ConfigSchema, {});
  const walk = (obj: Tree, prefix: string): void => {
    for (const [k, val] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (isTree(val)) walk(val, key);
      else if (typeof val === 'number') kinds.set(key, 'number');
      else if (typeof val === 'boolean') kinds.set(key, 'boolean');
      else if (Array.isArray(val)) kinds.set(key, key === 'webrtc.ice_servers' ? 'json' : 'list');
      else kinds.set(key, 'string');
    }
  };
  walk(defaults as unknown as Tree, '');
  return kinds;
}

/** TABAGENT_PORT -> port; TABAGENT_HTTP__CORS_ORIGINS -> http.cors_origins (double underscore nests). */
export function envToTree(env: NodeJS.ProcessEnv): Tree {
  const tree: Tree = {};
  const kinds = leafKinds();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('TABAGENT_') || raw === undefined) continue;
    const key = name.slice('TABAGENT_'.length).toLowerCase().split('__').join('.');
    const kind = kinds.get(key);
    if (!kind) continue;
    setPath(tree, key, coerce(raw, kind, `environment variable ${name}`));
  }
  return tree;
}

function coerce(raw: string, kind: 'number' | 'boolean' | 'list' | 'string' | 'json', where: string): unknown {
  switch (kind) {
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new TabAgentError('VALIDATION_ERROR', `${where}: '${raw}' is not a number`);
      return n;
    }
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new TabAgentError('VALIDATION_ERROR', `${where}: '${raw}' is not a boolean (true/false)`);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        throw new TabAgentError('VALIDATION_ERROR', `${where}: '${raw}' is not valid JSON`);
      }
    default:
      return raw;
  }
}

/** Reads a TOML (.toml) or YAML (.yaml/.yml) file; errors name the file and what is wrong. */
export function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TabAgentError('IO_ERROR', `cannot read config file ${file}: ${(err as Error).message}`);
  }
  const ext = path.extname(file).toLowerCase();
  let parsed: unknown;
  try {
    if (ext === '.toml') parsed = parseToml(text);
    else if (ext === '.yaml' || ext === '.yml') parsed = parseYaml(text);
    else throw new TabAgentError('VALIDATION_ERROR', `config file ${file}: unknown extension '${ext}' (use .toml, .yaml or .yml)`);
  } catch (err) {
    if (err instanceof TabAgentError) throw err;
    throw new TabAgentError('VALIDATION_ERROR', `config file ${file} is not valid ${ext === '.toml' ? 'TOML' : 'YAML'}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isTree(parsed)) throw new TabAgentError('VALIDATION_ERROR', `config file ${file} must hold a table of keys`);
  return parsed;
}

/** Keys the schema does not know are an error (a typo would otherwise be silently ignored). */
function unknownKeys(tree: Tree, kinds: Map<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, val] of Object.entries(tree)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (kinds.has(key)) continue;
    if (isTree(val) && [...kinds.keys()].some((known) => known.startsWith(`${key}.`))) out.push(...unknownKeys(val, kinds, key));
    else out.push(key);
  }
  return out;
}

/** Builds the effective config; throws VALIDATION_ERROR naming the key, the value, its source and what is allowed. */
export function loadConfig(opts: LoadOptions = {}): ResolvedConfig {
  const sources: Record<string, ConfigSource> = {};
  const kinds = leafKinds();
  let tree: Tree = {};
  const layers: [ConfigSource, Tree][] = [];
  if (opts.file) {
    const fileTree = readConfigFile(opts.file);
    const unknown = unknownKeys(fileTree, kinds);
    if (unknown.length) throw new TabAgentError('VALIDATION_ERROR', `config file ${opts.file}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`, { keys: unknown });
    layers.push(['file', fileTree]);
  }
  layers.push(['env', envToTree(opts.env ?? process.env)]);
  const flagTree: Tree = {};
  for (const [k, val] of Object.entries(opts.flags ?? {})) if (val !== undefined) setPath(flagTree, k, val);
  layers.push(['flag', flagTree]);
  for (const [source, layer] of layers) tree = deepMerge(tree, layer, source, sources);

  const result = v.safeParse(ConfigSchema, tree);
  if (!result.success) {
    const problems = result.issues.map((issue) => {
      const key = v.getDotPath(issue) ?? '(root)';
      const src = sources[key] ?? 'default';
      const where = src === 'file' ? `config file ${opts.file}` : src === 'env' ? `environment (TABAGENT_${key.toUpperCase().split('.').join('__')})` : src === 'flag' ? 'command-line flag' : 'default';
      return { key, value: issue.input, source: where, message: issue.message };
    });
    const text = problems.map((p) => `${p.key} = ${JSON.stringify(p.value)} from ${p.source}: ${p.message}`).join('; ');
    throw new TabAgentError('VALIDATION_ERROR', `invalid configuration: ${text}`, problems);
  }
  const config = result.output;
  if (!config.models_dir) config.models_dir = path.join(config.data_dir, 'models');
  for (const key of kinds.keys()) sources[key] ??= 'default';
  const resolved: ResolvedConfig = { config, sources };
  if (opts.file) resolved.file = opts.file;
  return resolved;
}

/** Lists every leaf key with its value and source, for `tabagent config print`. */
export function describeConfig(resolved: ResolvedConfig): { key: string; value: unknown; source: ConfigSource }[] {
  const rows: { key: string; value: unknown; source: ConfigSource }[] = [];
  const walk = (obj: Tree, prefix: string): void => {
    for (const [k, val] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (isTree(val)) walk(val, key);
      else rows.push({ key, value: val, source: resolved.sources[key] ?? 'default' });
    }
  };
  walk(resolved.config as unknown as Tree, '');
  return rows;
}

function leafValues(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  for (const row of describeConfig({ config, sources: {} })) out.set(row.key, JSON.stringify(row.value));
  return out;
}

export interface ConfigChange {
  config: Config;
  applied: string[];
  needsRestart: string[];
}

/**
 * Holds the live config. When the file changes it reloads: hot keys apply at once, other changes
 * are reported as needing a restart (and not applied), and an invalid file keeps the old config.
 */
export class ConfigStore {
  private current: ResolvedConfig;
  private watcher: FSWatcher | undefined;
  private readonly listeners = new Set<(change: ConfigChange) => void>();
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    initial: ResolvedConfig,
    private readonly loadOpts: LoadOptions,
  ) {
    this.current = initial;
  }

  get config(): Config {
    return this.current.config;
  }

  get resolved(): ResolvedConfig {
    return this.current;
  }

  onChange(listener: (change: ConfigChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Watches the config file (if any); `onError` hears about a file that no longer validates. */
  watch(onError: (err: TabAgentError) => void): void {
    const file = this.loadOpts.file;
    if (!file || this.watcher) return;
    // Watch the directory: editors replace files by rename, which ends a watch on the file itself.
    this.watcher = watch(path.dirname(path.resolve(file)), (_event, name) => {
      if (name !== null && name !== path.basename(file)) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => {
        try {
          this.reload();
        } catch (err) {
          onError(err instanceof TabAgentError ? err : new TabAgentError('IO_ERROR', String(err)));
        }
      }, 50);
    });
    this.watcher.unref();
  }

  /** Re-reads every source and applies what may change at run time. */
  reload(): ConfigChange {
    const next = loadConfig(this.loadOpts);
    const before = leafValues(this.current.config);
    const after = leafValues(next.config);
    const changed = [...after.keys()].filter((k) => before.get(k) !== after.get(k));
    const isHot = (k: string): boolean => HOT_KEYS.some((h) => k === h || k.startsWith(`${h}.`));
    const applied = changed.filter(isHot);
    const needsRestart = changed.filter((k) => !isHot(k));
    const merged = structuredClone(this.current.config) as unknown as Tree;
    for (const k of applied) {
      const parts = k.split('.');
      let src: unknown = next.config;
      for (const p of parts) src = (src as Tree)[p];
      setPath(merged, k, src);
    }
    this.current = { ...this.current, config: merged as unknown as Config };
    const change: ConfigChange = { config: this.current.config, applied, needsRestart };
    if (changed.length) for (const l of this.listeners) l(change);
    return change;
  }

  close(): void {
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
