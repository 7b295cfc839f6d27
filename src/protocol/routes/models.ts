/** Model routes: the catalogue of GGUF files, load and unload decisions, and server-wide default sampling params (owner: the model registry). */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { defineRoute } from '../route.js';
import { SamplingSchema } from './inference.js';

const ModelId = v.pipe(v.string('model_id must be a string'), v.minLength(1, 'model_id must not be empty'));
const NoPayload = v.optional(v.union([v.null(), v.object({})]));

export const ModelEntrySchema = v.object({
  id: v.string(),
  path: v.string(),
  size_bytes: v.number(),
  loaded: v.boolean(),
  architecture: v.nullable(v.string()),
  parameters: v.nullable(v.number()),
  quantization: v.nullable(v.string()),
  context_length: v.nullable(v.number()),
  embedding_length: v.nullable(v.number()),
  has_chat_template: v.boolean(),
  /** Set when the file is listed but its header cannot be read (truncated, not GGUF). */
  error: v.optional(v.string()),
});

export const LoadedModelSchema = v.object({
  id: v.string(),
  path: v.string(),
  loaded_at: v.string(),
  last_used_at: v.string(),
  /** When the keep-alive unloads it if still idle; null when keep-alive is off. */
  expires_at: v.nullable(v.string()),
  in_flight: v.number(),
  /** Estimated: the mapped file plus every worker's KV cache. */
  memory_bytes: v.number(),
});

export const models = defineRoute({
  name: 'models',
  owner: Addresses.models,
  summary: 'HTTP: GET /v1/models (OpenAI list, these fields included). GGUF models found in the models dir plus those given with --model; id = file name without .gguf unless configured (`id=path`).',
  input: v.optional(v.union([v.null(), v.object({ filter: v.optional(v.string()) })])),
  output: v.object({ models: v.array(ModelEntrySchema) }),
  priority: 'interactive',
});

export const modelInfo = defineRoute({
  name: 'model_info',
  owner: Addresses.models,
  summary: 'HTTP: GET /v1/models/{id}. Architecture, parameters, context length, quantisation and file size from the GGUF header.',
  input: v.object({ model_id: ModelId }),
  output: ModelEntrySchema,
  priority: 'interactive',
});

export const loadModel = defineRoute({
  name: 'load_model',
  owner: Addresses.models,
  summary:
    'Loads a model in every inference worker after a memory check. `stream: true` sends progress chunks {workers_ready, workers}. ' +
    'Past max_loaded_models the least recently used idle model is unloaded first.',
  input: v.object({ model_id: ModelId, force_reload: v.optional(v.boolean()), stream: v.optional(v.boolean()) }),
  output: LoadedModelSchema,
  priority: 'normal',
  streaming: true,
  http: [{ method: 'POST', path: '/v1/models/load' }],
});

export const unloadModel = defineRoute({
  name: 'unload_model',
  owner: Addresses.models,
  summary: 'Unloads a model; its running generations end with finish_reason cancelled.',
  input: v.object({ model_id: ModelId }),
  output: v.object({ model_id: v.string(), unloaded: v.boolean() }),
  priority: 'normal',
  http: [{ method: 'POST', path: '/v1/models/unload' }],
});

export const getLoadedModels = defineRoute({
  name: 'get_loaded_models',
  owner: Addresses.models,
  summary: 'Loaded models with their memory estimate, last use and idle expiry.',
  input: NoPayload,
  output: v.object({ models: v.array(LoadedModelSchema), max_loaded_models: v.number(), keep_alive_s: v.number() }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/models/loaded' }],
});

export const getParams = defineRoute({
  name: 'get_params',
  owner: Addresses.models,
  summary: 'Server-wide default sampling params, applied under each request\'s own (kept in memory until restart).',
  input: NoPayload,
  output: v.object({ params: SamplingSchema }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/params' }],
});

export const setParams = defineRoute({
  name: 'set_params',
  owner: Addresses.models,
  summary: 'Merges into the server-wide default sampling params; a field set to null goes back to the engine default.',
  input: v.object({
    params: v.object(
      Object.fromEntries(Object.entries(SamplingSchema.entries).map(([k, s]) => [k, v.nullish(s.wrapped)])) as {
        [K in keyof typeof SamplingSchema.entries]: v.NullishSchema<(typeof SamplingSchema.entries)[K]['wrapped'], undefined>;
      },
    ),
  }),
  output: v.object({ params: SamplingSchema }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/params' }],
});

export const modelRoutes = [models, modelInfo, loadModel, unloadModel, getLoadedModels, getParams, setParams];
