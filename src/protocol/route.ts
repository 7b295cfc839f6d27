/** A route definition: the one schema of a route's payload, its owner actor, default priority and HTTP binding. */
import type * as v from 'valibot';
import type { Priority } from '../bus/envelope.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** `path` may hold `{field}` segments: the HTTP carrier copies them into the payload under that name. */
export interface HttpBinding {
  method: HttpMethod;
  path: string;
}

export interface RouteDef<S extends v.GenericSchema = v.GenericSchema> {
  name: string;
  owner: string;
  summary: string;
  /** Schema of `payload`; validation, the TypeScript type and the OpenAPI document all derive from it. */
  input: S;
  /** Schema of the reply's `data`, for the OpenAPI document. */
  output?: v.GenericSchema;
  priority?: Priority;
  /** The route can stream chunk frames (when the payload asks for it with `stream: true`). */
  streaming?: boolean;
  http?: HttpBinding[];
}

export function defineRoute<S extends v.GenericSchema>(def: RouteDef<S>): RouteDef<S> {
  return def;
}

export type PayloadOf<R> = R extends RouteDef<infer S> ? v.InferOutput<S> : never;
