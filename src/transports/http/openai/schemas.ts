/** The OpenAI request and response shapes this server accepts and answers, as valibot schemas (validation and the OpenAPI document both use them). */
import * as v from 'valibot';

const Model = v.pipe(v.string('model must be a string'), v.minLength(1, 'model must not be empty'));
const Temperature = v.nullish(v.pipe(v.number(), v.minValue(0, 'temperature must be >= 0'), v.maxValue(2, 'temperature must be <= 2')));
const TopP = v.nullish(v.pipe(v.number(), v.minValue(0, 'top_p must be in [0, 1]'), v.maxValue(1, 'top_p must be in [0, 1]')));
const MaxTokens = v.nullish(v.pipe(v.number(), v.integer('must be an integer'), v.minValue(1, 'must be at least 1')));
const Stop = v.nullish(v.union([v.string(), v.pipe(v.array(v.string()), v.maxLength(16, 'at most 16 stop sequences'))], 'stop must be a string or an array of strings'));
const Penalty = v.nullish(v.pipe(v.number(), v.minValue(-2, 'must be in [-2, 2]'), v.maxValue(2, 'must be in [-2, 2]')));

/** Sampling fields shared by chat and completions, with the llama.cpp-style extensions local clients send. */
const Sampling = {
  model: Model,
  max_tokens: MaxTokens,
  temperature: Temperature,
  top_p: TopP,
  top_k: v.nullish(v.pipe(v.number(), v.integer(), v.minValue(0, 'top_k must be >= 0'))),
  min_p: v.nullish(v.pipe(v.number(), v.minValue(0, 'min_p must be in [0, 1]'), v.maxValue(1, 'min_p must be in [0, 1]'))),
  repeat_penalty: v.nullish(v.pipe(v.number(), v.minValue(0, 'repeat_penalty must be >= 0'))),
  seed: v.nullish(v.pipe(v.number(), v.integer('seed must be an integer'))),
  stop: Stop,
  /** Accepted for compatibility; the local sampler has repeat_penalty instead. */
  frequency_penalty: Penalty,
  presence_penalty: Penalty,
  stream: v.nullish(v.boolean()),
  stream_options: v.nullish(v.object({ include_usage: v.optional(v.boolean()) })),
  n: v.nullish(v.literal(1, 'only n = 1 is supported')),
  user: v.optional(v.string()),
};

const TextPart = v.object({
  type: v.literal('text', "only content parts of type 'text' are supported"),
  text: v.string(),
});

export const ChatMessageSchema = v.looseObject({
  role: v.picklist(['system', 'developer', 'user', 'assistant', 'tool', 'function'], 'role must be one of system, developer, user, assistant, tool, function'),
  content: v.nullish(v.union([v.string(), v.array(TextPart)], 'content must be a string or an array of text parts')),
  name: v.optional(v.string()),
});

const ResponseFormat = v.variant(
  'type',
  [
    v.object({ type: v.literal('text') }),
    v.object({ type: v.literal('json_object') }),
    v.object({
      type: v.literal('json_schema'),
      json_schema: v.object({ name: v.optional(v.string()), schema: v.record(v.string(), v.unknown()), strict: v.nullish(v.boolean()), description: v.optional(v.string()) }),
    }),
  ],
  "response_format.type must be 'text', 'json_object' or 'json_schema'",
);

export const ChatCompletionRequestSchema = v.looseObject({
  ...Sampling,
  messages: v.pipe(v.array(ChatMessageSchema, 'messages must be an array'), v.minLength(1, 'messages must not be empty')),
  max_completion_tokens: MaxTokens,
  response_format: v.nullish(ResponseFormat),
  tools: v.nullish(v.pipe(v.array(v.unknown()), v.maxLength(0, 'tools (function calling) are not supported by this server'))),
  logprobs: v.nullish(v.literal(false, 'logprobs are not supported by this server')),
  /** TabAgent extension: keep this conversation's context warm across requests. */
  session_id: v.optional(v.string()),
});

export const CompletionRequestSchema = v.looseObject({
  ...Sampling,
  prompt: v.union([v.string(), v.pipe(v.array(v.string()), v.length(1, 'only one prompt per request is supported'))], 'prompt must be a string (or an array of one string)'),
  echo: v.nullish(v.literal(false, 'echo is not supported by this server')),
  suffix: v.nullish(v.literal('', 'suffix is not supported by this server')),
  best_of: v.nullish(v.literal(1, 'only best_of = 1 is supported')),
  logprobs: v.nullish(v.literal(0, 'logprobs are not supported by this server')),
});

export const EmbeddingRequestSchema = v.looseObject({
  model: Model,
  input: v.union(
    [v.pipe(v.string(), v.minLength(1, 'input must not be empty')), v.pipe(v.array(v.string()), v.minLength(1, 'input must not be empty'))],
    'input must be a string or an array of strings (token arrays are not supported)',
  ),
  encoding_format: v.nullish(v.picklist(['float', 'base64'], "encoding_format must be 'float' or 'base64'")),
  dimensions: v.nullish(v.never('dimensions is not supported by this server')),
  user: v.optional(v.string()),
});

const Usage = v.object({ prompt_tokens: v.number(), completion_tokens: v.number(), total_tokens: v.number() });
const FinishReason = v.picklist(['stop', 'length', 'cancelled']);

export const ChatCompletionSchema = v.object({
  id: v.string(),
  object: v.literal('chat.completion'),
  created: v.number(),
  model: v.string(),
  choices: v.array(v.object({ index: v.number(), message: v.object({ role: v.literal('assistant'), content: v.string() }), finish_reason: FinishReason, logprobs: v.null() })),
  usage: Usage,
});

export const CompletionSchema = v.object({
  id: v.string(),
  object: v.literal('text_completion'),
  created: v.number(),
  model: v.string(),
  choices: v.array(v.object({ index: v.number(), text: v.string(), finish_reason: FinishReason, logprobs: v.null() })),
  usage: Usage,
});

export const EmbeddingListSchema = v.object({
  object: v.literal('list'),
  model: v.string(),
  data: v.array(v.object({ object: v.literal('embedding'), index: v.number(), embedding: v.union([v.array(v.number()), v.string()]) })),
  usage: v.object({ prompt_tokens: v.number(), total_tokens: v.number() }),
});

export const ModelObjectSchema = v.looseObject({ id: v.string(), object: v.literal('model'), created: v.number(), owned_by: v.string() });
export const ModelListSchema = v.object({ object: v.literal('list'), data: v.array(ModelObjectSchema) });

export type ChatCompletionRequest = v.InferOutput<typeof ChatCompletionRequestSchema>;
export type CompletionRequest = v.InferOutput<typeof CompletionRequestSchema>;
export type EmbeddingRequest = v.InferOutput<typeof EmbeddingRequestSchema>;
