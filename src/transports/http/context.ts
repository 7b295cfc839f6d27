/** What the pieces of one HTTP listener share: the gateway, live config, counters, and the binding of handlers (with their docs) to paths. */
import type * as v from 'valibot';
import type { Config } from '../../runtime/config.js';
import type { Log } from '../../runtime/logger.js';
import type { Gateway } from '../gateway.js';
import type { Exchange } from './exchange.js';
import type { HttpStats } from './stats.js';

export type Handler = (ex: Exchange, params: Readonly<Record<string, string>>) => void;

/** How an operation appears in the OpenAPI document: everything comes from valibot schemas, nothing is written twice. */
export interface OperationDoc {
  operationId: string;
  summary: string;
  tags: string[];
  /** The bus route it serves (or translates to). */
  route?: string;
  /** JSON body schema (POST/PUT/PATCH). */
  body?: v.GenericSchema;
  /** Query parameters (GET/DELETE), as an object schema's entries. */
  query?: Record<string, v.GenericSchema>;
  response?: v.GenericSchema;
  /** The operation can answer as text/event-stream. */
  streaming?: boolean;
  /** Errors use OpenAI's shape instead of problem+json. */
  openaiErrors?: boolean;
  /** Not JSON (the docs pages). */
  contentType?: string;
}

export interface Operation {
  method: string;
  path: string;
  doc: OperationDoc;
}

export interface ListenerContext {
  readonly name: string;
  readonly gateway: Gateway;
  readonly log: Log;
  readonly stats: HttpStats;
  config(): Config;
  /** Binds a handler; the first binding of a method and path wins (OpenAI adapters are bound before the generic routes). */
  bind(method: string, path: string, handler: Handler, doc: OperationDoc): boolean;
  readonly operations: readonly Operation[];
}
