/** The OpenAPI 3.1 document, generated from the operations bound on a listener and their valibot schemas (never written by hand). */
import { toJsonSchema } from '@valibot/to-json-schema';
import type * as v from 'valibot';
import { version } from '../../runtime/version.js';
import type { Operation } from './context.js';

type Json = Record<string, unknown>;

function schemaOf(schema: v.GenericSchema): Json {
  const json = toJsonSchema(schema, { target: 'draft-2020-12', typeMode: 'input', errorMode: 'ignore' }) as Json;
  delete json['$schema'];
  stripCarrierFields(json);
  return json;
}

/** `_remote_address` is set by the carrier, never by a client: keep it out of the documented request bodies. */
function stripCarrierFields(json: Json): void {
  const props = json['properties'] as Json | undefined;
  if (props && '_remote_address' in props) {
    delete props['_remote_address'];
    const required = json['required'];
    if (Array.isArray(required)) json['required'] = required.filter((k) => k !== '_remote_address');
  }
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const list = json[key];
    if (Array.isArray(list)) for (const s of list) if (typeof s === 'object' && s) stripCarrierFields(s as Json);
  }
}

const Problem: Json = {
  type: 'object',
  description: 'RFC 7807 problem details',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    request_id: { type: 'string' },
    instance: { type: 'string' },
    errors: {},
  },
  required: ['type', 'title', 'status', 'detail', 'code', 'request_id'],
};

const OpenAiError: Json = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { message: { type: 'string' }, type: { type: 'string' }, code: { type: ['string', 'null'] }, param: { type: ['string', 'null'] } },
      required: ['message', 'type'],
    },
  },
  required: ['error'],
};

export function buildOpenApi(operations: readonly Operation[]): Json {
  const paths: Record<string, Json> = {};
  for (const op of operations) {
    const item = (paths[op.path] ??= {});
    const { doc } = op;
    const operation: Json = { operationId: doc.operationId, summary: doc.summary, tags: doc.tags };
    if (doc.route) operation['x-tabagent-route'] = doc.route;
    const parameters: Json[] = [];
    for (const m of op.path.matchAll(/\{([A-Za-z0-9_]+)\}/g)) {
      parameters.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } });
    }
    for (const [name, schema] of Object.entries(doc.query ?? {})) {
      const json = schemaOf(schema);
      const optional = ['optional', 'nullish', 'exact_optional'].includes((schema as { type: string }).type);
      parameters.push({ name, in: 'query', required: !optional, schema: json });
    }
    if (parameters.length) operation['parameters'] = parameters;
    if (doc.body) operation['requestBody'] = { required: false, content: { 'application/json': { schema: schemaOf(doc.body) } } };
    const content: Json = {};
    if (doc.contentType) content[doc.contentType] = { schema: { type: 'string' } };
    else content['application/json'] = { schema: doc.response ? schemaOf(doc.response) : {} };
    if (doc.streaming) content['text/event-stream'] = { schema: { type: 'string', description: 'server-sent events (with `stream: true`)' } };
    const error = doc.openaiErrors
      ? { description: 'Error (OpenAI shape)', content: { 'application/json': { schema: { $ref: '#/components/schemas/OpenAiError' } } } }
      : { description: 'Error (RFC 7807)', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
    operation['responses'] = { '200': { description: 'OK', content }, default: error };
    item[op.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'TabAgent Server',
      version,
      description:
        'Local AI server: OpenAI-compatible endpoints plus the TabAgent routes. Every route is also reachable over the WebSocket at /v1/ws with the request contract {request_id, route, payload}.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    paths,
    components: { schemas: { Problem, OpenAiError } },
  };
}
