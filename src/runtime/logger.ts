/** Structured logs (tslog) as one JSON line each on stderr: stdout belongs to native messaging. */
import { Logger as TsLogger } from 'tslog';

export const LogLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LogLevels)[number];
const rank: Record<LogLevel, number> = { trace: 1, debug: 2, info: 3, warn: 4, error: 5, fatal: 6, silent: 99 };

export type LogFields = Record<string, unknown>;

export interface Log {
  trace(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose every line also carries these fields (a request id, an actor name). */
  child(fields: LogFields): Log;
}

/** The root's level, shared by every child so a hot-reloaded level applies at once everywhere. */
interface LevelRef {
  min: number;
}

type Sink = (line: string) => void;

function serialise(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? { name: value.name, message: value.message } : { name: value.name, message: value.message, code };
  }
  return value;
}

class TsLog implements Log {
  constructor(
    private readonly ts: TsLogger<LogFields>,
    private readonly level: LevelRef,
    private readonly fields: LogFields,
  ) {}

  trace(msg: string, fields?: LogFields): void {
    if (this.level.min <= 1) this.ts.trace(this.merge(fields), msg);
  }
  debug(msg: string, fields?: LogFields): void {
    if (this.level.min <= 2) this.ts.debug(this.merge(fields), msg);
  }
  info(msg: string, fields?: LogFields): void {
    if (this.level.min <= 3) this.ts.info(this.merge(fields), msg);
  }
  warn(msg: string, fields?: LogFields): void {
    if (this.level.min <= 4) this.ts.warn(this.merge(fields), msg);
  }
  error(msg: string, fields?: LogFields): void {
    if (this.level.min <= 5) this.ts.error(this.merge(fields), msg);
  }
  child(fields: LogFields): Log {
    return new TsLog(this.ts, this.level, { ...this.fields, ...fields });
  }

  private merge(fields: LogFields | undefined): LogFields {
    if (!fields) return this.fields;
    const out: LogFields = { ...this.fields };
    for (const [k, v] of Object.entries(fields)) out[k] = serialise(v);
    return out;
  }
}

export interface RootLog extends Log {
  setLevel(level: LogLevel): void;
}

/** Creates the process's root logger; `sink` defaults to stderr (tests pass their own). */
export function createLogger(level: LogLevel = 'info', sink: Sink = (line) => process.stderr.write(line)): RootLog {
  const ts = new TsLogger<LogFields>({ type: 'hidden', minLevel: 'TRACE', stack: { capture: 'off' } });
  ts.attachTransport((record: Record<string, unknown>) => {
    const meta = record['_logMeta'] as { logLevelName?: string; date?: Date | string } | undefined;
    const fields = (record['0'] ?? {}) as LogFields;
    const line = { time: meta?.date instanceof Date ? meta.date.toISOString() : meta?.date, level: meta?.logLevelName?.toLowerCase(), msg: record['1'], ...fields };
    sink(JSON.stringify(line) + '\n');
  });
  const ref: LevelRef = { min: rank[level] };
  const root = new TsLog(ts, ref, {}) as TsLog & RootLog;
  root.setLevel = (next: LogLevel) => {
    ref.min = rank[next];
  };
  return root;
}

/** A logger that drops everything: for library use and benchmarks that must not measure logging. */
export const silentLog: Log = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLog;
  },
};
