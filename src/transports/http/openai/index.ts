/** The OpenAI-compatible endpoints: each translates an OpenAI request into a bus route (chat, generate, embeddings, models, model_info) and the reply back. */
import * as v from 'valibot';
import { validationError } from '../../../protocol/contract.js';
import { toTabAgentError } from '../../../protocol/errors.js';
import type { ListenerContext, OperationDoc } from '../context.js';
import type { Exchange } from '../exchange.js';
import { parseObjectBody } from '../payload.js';
import { chatCompletion, completion } from './generation.js';
import { embeddings } from './embeddings.js';
import { getModel, listModels } from './models.js';
import {
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  CompletionRequestSchema,
  CompletionSchema,
  EmbeddingListSchema,
  EmbeddingRequestSchema,
  ModelListSchema,
  ModelObjectSchema,
} from './schemas.js';

/** A POST endpoint whose JSON body is validated against an OpenAI request schema; errors in OpenAI's shape. */
function post<S extends v.GenericSchema>(
  lc: ListenerContext,
  path: string,
  schema: S,
  doc: Omit<OperationDoc, 'body' | 'openaiErrors' | 'tags'>,
  run: (ex: Exchange, body: v.InferOutput<S>) => void,
): void {
  lc.bind(
    'POST',
    path,
    (ex) => {
      ex.errorStyle = 'openai';
      ex.readBody(lc.config().http.body_limit_bytes).then(
        (raw) => {
          let body: v.InferOutput<S>;
          try {
            const parsed = v.safeParse(schema, parseObjectBody(raw) ?? {});
            if (!parsed.success) throw validationError(parsed.issues, 'request body');
            body = parsed.output;
          } catch (err) {
            return ex.fail(toTabAgentError(err));
          }
          run(ex, body);
        },
        (err: unknown) => ex.fail(toTabAgentError(err)),
      );
    },
    { ...doc, body: schema, openaiErrors: true, tags: ['openai'] },
  );
}

export function bindOpenAi(lc: ListenerContext, startedAt: number): void {
  post(lc, '/v1/chat/completions', ChatCompletionRequestSchema, {
    operationId: 'openai_chat_completions',
    summary: 'OpenAI chat completions (plain or streamed as server-sent events with `stream: true`).',
    route: 'chat',
    response: ChatCompletionSchema,
    streaming: true,
  }, (ex, body) => chatCompletion(lc, ex, body));
  post(lc, '/v1/completions', CompletionRequestSchema, {
    operationId: 'openai_completions',
    summary: 'OpenAI text completions (plain or streamed).',
    route: 'generate',
    response: CompletionSchema,
    streaming: true,
  }, (ex, body) => completion(lc, ex, body));
  post(lc, '/v1/embeddings', EmbeddingRequestSchema, {
    operationId: 'openai_embeddings',
    summary: 'OpenAI embeddings (encoding_format float or base64).',
    route: 'embeddings',
    response: EmbeddingListSchema,
  }, (ex, body) => embeddings(lc, ex, body));
  lc.bind('GET', '/v1/models', (ex) => {
    ex.errorStyle = 'openai';
    listModels(lc, ex, startedAt);
  }, { operationId: 'openai_models', summary: 'OpenAI model list: the GGUF models this server can serve.', tags: ['openai'], route: 'models', response: ModelListSchema, openaiErrors: true });
  lc.bind('GET', '/v1/models/{model}', (ex, params) => {
    ex.errorStyle = 'openai';
    getModel(lc, ex, params['model']!, startedAt);
  }, { operationId: 'openai_model', summary: 'One model, OpenAI style.', tags: ['openai'], route: 'model_info', response: ModelObjectSchema, openaiErrors: true });
}
