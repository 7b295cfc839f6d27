/** Inference routes: chat, generate, embeddings, tokenize, detokenize and the pool's statistics (owner: the model registry). */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { IdSchema } from '../../runtime/storage/schema.js';
import { defineRoute } from '../route.js';

const ModelId = v.pipe(v.string('model must be a string'), v.minLength(1, 'model must not be empty'));

function ranged(name: string, min: number, max: number) {
  return v.pipe(v.number(`${name} must be a number`), v.minValue(min, `${name} must be at least ${min}`), v.maxValue(max, `${name} must be at most ${max}`));
}
function int(name: string, min: number, max: number) {
  return v.pipe(v.number(`${name} must be a number`), v.integer(`${name} must be an integer`), v.minValue(min, `${name} must be at least ${min}`), v.maxValue(max, `${name} must be at most ${max}`));
}

/** Sampling settings: every field optional; unset ones come from set_params, then the engine's defaults. */
export const SamplingFields = {
  max_tokens: v.optional(int('max_tokens', 1, 1_000_000)),
  temperature: v.optional(ranged('temperature', 0, 2)),
  top_p: v.optional(ranged('top_p', 0, 1)),
  top_k: v.optional(int('top_k', 0, 100_000)),
  min_p: v.optional(ranged('min_p', 0, 1)),
  seed: v.optional(int('seed', 0, 2 ** 32 - 1)),
  stop: v.optional(
    v.union(
      [v.string(), v.pipe(v.array(v.string()), v.maxLength(16, 'stop takes at most 16 sequences'))],
      'stop must be a string or a list of strings',
    ),
  ),
  repeat_penalty: v.optional(ranged('repeat_penalty', 0.01, 5)),
};
export const SamplingSchema = v.object(SamplingFields);

export const ResponseFormatSchema = v.variant(
  'type',
  [
    v.object({ type: v.literal('text') }),
    v.object({ type: v.literal('json_object') }),
    v.object({
      type: v.literal('json_schema'),
      json_schema: v.object({ name: v.optional(v.string()), strict: v.optional(v.nullable(v.boolean())), schema: v.record(v.string(), v.unknown()) }),
    }),
  ],
  "response_format.type must be 'text', 'json_object' or 'json_schema'",
);

export const ChatMessageSchema = v.object({
  role: v.picklist(['system', 'user', 'assistant', 'function', 'tool'], 'role must be one of system, user, assistant, function, tool'),
  content: v.string('content must be a string'),
  name: v.optional(v.string()),
});

const UsageSchema = v.object({ prompt_tokens: v.number(), completion_tokens: v.number(), total_tokens: v.number() });
const FinishSchema = v.picklist(['stop', 'length', 'cancelled']);
const GenerationReply = {
  id: v.string(),
  model: v.string(),
  created: v.number(),
  finish_reason: FinishSchema,
  usage: UsageSchema,
};

export const chat = defineRoute({
  name: 'chat',
  owner: Addresses.models,
  summary:
    "A chat reply from the model's own chat template (ChatML when the GGUF has none). `stream: true` sends {delta} chunks first. " +
    'With `session_id` the stored conversation is the context (fitted to the model\'s context, oldest turns dropped first) and the new messages and the reply are saved.',
  input: v.object({
    model: ModelId,
    messages: v.pipe(v.array(ChatMessageSchema, 'messages must be a list'), v.minLength(1, 'messages must not be empty')),
    ...SamplingFields,
    response_format: v.optional(ResponseFormatSchema),
    stream: v.optional(v.boolean()),
    session_id: v.optional(IdSchema),
  }),
  output: v.object({
    ...GenerationReply,
    message: v.object({ role: v.literal('assistant'), content: v.string() }),
    session_id: v.optional(v.string()),
    history_dropped: v.optional(v.number()),
  }),
  priority: 'interactive',
  streaming: true,
});

export const generate = defineRoute({
  name: 'generate',
  owner: Addresses.models,
  summary: 'Raw completion of a prompt (no chat template). `stream: true` sends {delta} chunks first.',
  input: v.object({
    model: ModelId,
    prompt: v.string('prompt must be a string'),
    ...SamplingFields,
    response_format: v.optional(ResponseFormatSchema),
    stream: v.optional(v.boolean()),
  }),
  output: v.object({ ...GenerationReply, text: v.string() }),
  priority: 'normal',
  streaming: true,
});

export const embeddings = defineRoute({
  name: 'embeddings',
  owner: Addresses.models,
  summary: "Embeddings of a string or a list of strings, each of the model's embedding length.",
  input: v.object({
    model: ModelId,
    input: v.union(
      [v.string(), v.pipe(v.array(v.string()), v.minLength(1, 'input must not be an empty list'), v.maxLength(2048, 'input takes at most 2048 strings'))],
      'input must be a string or a list of strings',
    ),
  }),
  output: v.object({
    model: v.string(),
    data: v.array(v.object({ index: v.number(), embedding: v.array(v.number()) })),
    usage: v.object({ prompt_tokens: v.number(), total_tokens: v.number() }),
  }),
  priority: 'normal',
});

export const tokenize = defineRoute({
  name: 'tokenize',
  owner: Addresses.models,
  summary: "The model's tokens for a text (no BOS added).",
  input: v.object({ model: ModelId, text: v.string('text must be a string') }),
  output: v.object({ tokens: v.array(v.number()) }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/tokenize' }],
});

export const detokenize = defineRoute({
  name: 'detokenize',
  owner: Addresses.models,
  summary: 'The text of a list of tokens.',
  input: v.object({ model: ModelId, tokens: v.array(v.pipe(v.number(), v.integer('tokens must be integers'), v.minValue(0, 'tokens must not be negative'))) }),
  output: v.object({ text: v.string() }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/detokenize' }],
});

export const getStats = defineRoute({
  name: 'get_stats',
  owner: Addresses.models,
  summary: 'Tokens/s, time to first token (p50/p99), requests by outcome per model; queue depth per priority class and the pool plan.',
  input: v.optional(v.union([v.null(), v.object({})])),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/stats' }],
});

export const inferenceRoutes = [chat, generate, embeddings, tokenize, detokenize, getStats];
