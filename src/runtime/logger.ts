/** Structured logs (tslog) on stderr, one JSON line each or a readable line for a person at a terminal: stdout belongs to native messaging. */
import { Logger as TsLogger } from 'tslog';

export const LogLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LogLevels)[number];
const rank: Record<LogLevel, number> = { trace: 1, debug: 2, info: 3, warn: 4, error: 5, fatal: 6, silent: 99 };

export type LogFields = Record<string, unknown>;

export const LogFormats = ['json', 'pretty', 'auto'] as const;
export type LogFormat = (typeof LogFormats)[number];

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

const colours: Record<string, string> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31', fatal: '35' };

/** `time LEVEL message key=value …`, coloured on a terminal: for `npm run dev` and people reading along. */
function prettyLine(line: { time?: string | undefined; level?: string | undefined; msg: unknown; [k: string]: unknown }, colour: boolean): string {
  const { time, level = 'info', msg, ...fields } = line;
  const tag = level.toUpperCase().padEnd(5);
  const head = `${(time ?? '').slice(11, 23)} ${colour ? `\x1b[${colours[level] ?? '0'}m${tag}\x1b[0m` : tag} ${String(msg)}`;
  const rest = Object.entries(fields).map(([k, v]) => `${colour ? `\x1b[2m${k}=\x1b[0m` : `${k}=`}${typeof v === 'string' ? (/[\s"=]/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`);
  return `${[head, ...rest].join('  ')}\n`;
}

/** The format a process logs in: the given one, else TABAGENT_LOG_FORMAT (worker threads inherit it), else JSON. */
export function resolveLogFormat(format: LogFormat | undefined = process.env['TABAGENT_LOG_FORMAT'] as LogFormat | undefined, isTty = process.stderr.isTTY === true): 'json' | 'pretty' {
  if (format === 'pretty') return 'pretty';
  if (format === 'auto') return isTty ? 'pretty' : 'json';
  return 'json';
}

/** Creates the process's root logger; `sink` defaults to stderr (tests pass their own). */
export function createLogger(level: LogLevel = 'info', sink: Sink = (line) => process.stderr.write(line), format: LogFormat | undefined = undefined): RootLog {
  const pretty = resolveLogFormat(format) === 'pretty';
  const colour = pretty && process.stderr.isTTY === true && !process.env['NO_COLOR'];
  const ts = new TsLogger<LogFields>({ type: 'hidden', minLevel: 'TRACE', stack: { capture: 'off' } });
  ts.attachTransport((record: Record<string, unknown>) => {
    const meta = record['_logMeta'] as { logLevelName?: string; date?: Date | string } | undefined;
    const fields = (record['0'] ?? {}) as LogFields;
    const line = { time: meta?.date instanceof Date ? meta.date.toISOString() : meta?.date, level: meta?.logLevelName?.toLowerCase(), msg: record['1'], ...fields };
    sink(pretty ? prettyLine(line, colour) : JSON.stringify(line) + '\n');
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
