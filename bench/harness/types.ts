/** The harness's shapes: profiles (what one request is), targets (what it talks to), load options and results. */

export type Transport = 'http' | 'ws' | 'native' | 'webrtc' | 'bus' | 'storage' | 'inference' | 'baseline';
export type ServerMode = 'native' | 'http' | 'webrtc' | 'both' | 'all';

/** What one request produced. Server errors are outcomes ({ok: false, code}), not exceptions. */
export interface Outcome {
  ok: boolean;
  code?: string;
  bytes?: number;
  tokens?: number;
  /** Time to first token (streams), measured by the profile from its own send. */
  ttftMs?: number;
  /** What went wrong, for the report's error samples. */
  message?: string;
}

/** What a profile talks to: a server the harness started, or one given by address. */
export interface Target {
  /** HTTP base, e.g. http://127.0.0.1:3000 */
  url: string;
  /** ws://host:port/v1/ws */
  wsUrl: string;
  /** The signalling base for WebRTC (the --webrtc-port listener, else the main port). */
  webrtcUrl: string;
  /** The server process, when its RSS and open handles can be read from /proc. */
  pid?: number;
  dataDir?: string;
  /** The model the server preloaded (id = file name without .gguf). */
  model?: { id: string; path: string };
  /** true when the harness started this server. */
  started: boolean;
  /** Absolute path of the compiled CLI (dist/src/cli.js): native hosts are spawned from it. */
  cliPath: string;
  /** The environment a spawned native host needs to find this server (TABAGENT_DATA_DIR ...). */
  env: Record<string, string>;
}

export interface Profile<C = unknown> {
  /** Unique, kebab-case. */
  name: string;
  transport: Transport;
  description: string;
  /** What a server the harness starts must have for this profile. */
  needs?: { model?: boolean; mode?: ServerMode; server?: false };
  /** Load defaults that suit the profile (a chat stream wants fewer clients than health). */
  defaults?: Partial<LoadOptions>;
  /** One client serves every in-flight request (pipelining); otherwise one client per concurrent slot. */
  sharedClient?: boolean;
  /**
   * A profile that brings its own server (a baseline): started before setup, stopped after teardown. It gets the
   * target the run was given (its model, say); the target it returns (with its pid, for peak RSS) is what setup gets.
   */
  own?(given: Target): Promise<{ target: Target; stop(): Promise<void> }>;
  setup(target: Target, index: number): Promise<C>;
  request(client: C, seq: number): Promise<Outcome>;
  teardown?(client: C): Promise<void>;
}

export type LoopMode = 'closed' | 'open';

export interface LoadOptions {
  mode: LoopMode;
  /** Closed loop: requests in flight at once. Open loop: clients set up (requests beyond them queue). */
  concurrency: number;
  /** Open loop: arrivals per second. */
  rate?: number;
  /** Stop after this many measured requests ... */
  requests?: number;
  /** ... or after this many seconds (the default, when neither is given, is 5 s). */
  durationS?: number;
  warmupS?: number;
  warmupRequests?: number;
  /** A request not answered in this time is an error TIMEOUT (and the run goes on). */
  timeoutMs: number;
  /** Progress output: 'auto' (TTY line or periodic lines), or 'off'. */
  progress?: 'auto' | 'off';
}

export interface LatencySummary {
  count: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p99_9_ms: number;
  max_ms: number;
}

export interface RunResult {
  profile: string;
  transport: Transport;
  description: string;
  mode: LoopMode;
  concurrency: number;
  rate?: number;
  /** Measured (post warm-up) requests completed, ok or not. */
  requests: number;
  ok: number;
  errors: Record<string, number>;
  /** Example message per error code (the first seen). */
  error_samples: Record<string, string>;
  duration_s: number;
  throughput_rps: number;
  latency: LatencySummary;
  tokens?: number;
  tokens_per_s?: number;
  ttft?: LatencySummary;
  bytes?: number;
  mb_per_s?: number;
  /** Open loop: requests that could not be sent when intended because every client was busy. */
  delayed_sends?: number;
  server_peak_rss_bytes?: number;
  /** Server CPU over the measured phase, in percent of one core (200 = two cores busy); local servers only. */
  server_cpu_pct?: number;
  /** The load generator's own CPU over the measured phase (percent of one core): near 100 means it, not the server, may be the limit. */
  generator_cpu_pct: number;
  /** Client-side process RSS at the end (the load generator's own). */
  generator_rss_bytes: number;
}

export interface HostFacts {
  cores: number;
  cpu: string;
  node: string;
  platform: string;
  total_mem_bytes: number;
}

/** One figure of BENCHMARKS.md. Only name, value and unit are required. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  baseline?: { name: string; value: number };
  ratio?: number;
  target?: string;
  pass?: boolean;
  p50_ms?: number;
  p99_ms?: number;
  notes?: string;
}

/** The file every bench script writes to bench/results/<suite>.json. */
export interface BenchResult {
  schema: 'tabagent-bench/1';
  suite: string;
  title: string;
  command: string;
  date: string;
  host: HostFacts;
  figures: Figure[];
  /** Full run records, for machines. */
  runs?: RunResult[];
  [extra: string]: unknown;
}
