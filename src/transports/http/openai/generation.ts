/** Chat and text completions: OpenAI requests to the bus `chat` / `generate` routes, replies and SSE chunks back in OpenAI's shapes. */
import { toTabAgentError, type TabAgentError } from '../../../protocol/errors.js';
import { deltaOf } from '../bus-routes.js';
import type { CallOptions } from '../../gateway.js';
import type { ListenerContext } from '../context.js';
import { openAiErrorBody } from '../errors.js';
import type { Exchange } from '../exchange.js';
import { SseStream } from '../sse.js';
import type { ChatCompletionRequest, CompletionRequest } from './schemas.js';

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}
interface ChatReply {
  id: string;
  model: string;
  created: number;
  message: { role: 'assistant'; content: string };
  finish_reason: string;
  usage: Usage;
}
interface GenerateReply {
  id: string;
  model: string;
  created: number;
  text: string;
  finish_reason: string;
  usage: Usage;
}

type Body = ChatCompletionRequest | CompletionRequest;

/** The sampling fields the bus routes take, copied from the OpenAI request where given. */
function sampling(body: Body): Record<string, unknown> {
  const out: Record<string, unknown> = { model: body.model };
  const maxTokens = ('max_completion_tokens' in body ? body.max_completion_tokens : undefined) ?? body.max_tokens;
  if (maxTokens != null) out['max_tokens'] = maxTokens;
  for (const key of ['temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'repeat_penalty'] as const) {
    if (body[key] != null) out[key] = body[key];
  }
  return out;
}

function contentText(content: ChatCompletionRequest['messages'][number]['content']): string {
  if (content == null) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

export function chatCompletion(lc: ListenerContext, ex: Exchange, body: ChatCompletionRequest): void {
  const payload = sampling(body);
  payload['messages'] = body.messages.map((m) => {
    const msg: Record<string, unknown> = { role: m.role === 'developer' ? 'system' : m.role, content: contentText(m.content) };
    if (m.name !== undefined) msg['name'] = m.name;
    return msg;
  });
  if (body.response_format) payload['response_format'] = body.response_format;
  if (body.session_id !== undefined) payload['session_id'] = body.session_id;
  const shape = {
    object: 'chat.completion.chunk',
    first: (delta: string) => ({ index: 0, delta: { role: 'assistant', content: delta }, logprobs: null, finish_reason: null }),
    delta: (delta: string) => ({ index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }),
    last: (finish: string) => ({ index: 0, delta: {}, logprobs: null, finish_reason: finish }),
  };
  run(lc, ex, 'chat', payload, body, `chatcmpl-${ex.requestId}`, shape, (r) => {
    const reply = r as ChatReply;
    return {
      id: reply.id,
      object: 'chat.completion',
      created: reply.created,
      model: reply.model,
      choices: [{ index: 0, message: { role: 'assistant', content: reply.message.content }, logprobs: null, finish_reason: reply.finish_reason }],
      usage: reply.usage,
    };
  });
}

export function completion(lc: ListenerContext, ex: Exchange, body: CompletionRequest): void {
  const payload = sampling(body);
  payload['prompt'] = typeof body.prompt === 'string' ? body.prompt : body.prompt[0];
  const shape = {
    object: 'text_completion',
    first: (delta: string) => ({ index: 0, text: delta, logprobs: null, finish_reason: null }),
    delta: (delta: string) => ({ index: 0, text: delta, logprobs: null, finish_reason: null }),
    last: (finish: string) => ({ index: 0, text: '', logprobs: null, finish_reason: finish }),
  };
  run(lc, ex, 'generate', payload, body, `cmpl-${ex.requestId}`, shape, (r) => {
    const reply = r as GenerateReply;
    return {
      id: reply.id,
      object: 'text_completion',
      created: reply.created,
      model: reply.model,
      choices: [{ index: 0, text: reply.text, logprobs: null, finish_reason: reply.finish_reason }],
      usage: reply.usage,
    };
  });
}

interface StreamShape {
  object: string;
  first(delta: string): unknown;
  delta(delta: string): unknown;
  last(finish: string): unknown;
}

function run(
  lc: ListenerContext,
  ex: Exchange,
  route: 'chat' | 'generate',
  payload: Record<string, unknown>,
  body: Body,
  streamId: string,
  shape: StreamShape,
  toOpenAi: (reply: unknown) => unknown,
): void {
  const opts: CallOptions = { signal: ex.signal, priority: 'interactive' };
  if (!body.stream) {
    lc.gateway.call(route, payload, ex.requestId, opts).then(
      (reply) => ex.json(200, toOpenAi(reply)),
      (err: unknown) => ex.fail(toTabAgentError(err)),
    );
    return;
  }
  payload['stream'] = true;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model;
  const event = (choices: unknown[], usage?: Usage): string =>
    `data: ${JSON.stringify(usage ? { id: streamId, object: shape.object, created, model, choices, usage } : { id: streamId, object: shape.object, created, model, choices })}\n\n`;
  const renderDelta = (text: string): string => event([shape.delta(text)]);
  const sse = new SseStream(ex, lc.stats, lc.config().http.stream_max_pending_bytes, () => ex.abortConnection());
  let opened = false;
  // The head goes out with the first token, so an error before any (unknown model, busy) keeps its status code.
  const open = (): void => {
    if (opened) return;
    opened = true;
    sse.open();
    sse.event(event([shape.first('')]));
  };
  opts.onChunk = (chunk) => {
    const d = deltaOf(chunk) ?? (chunk as { delta?: unknown } | null)?.delta;
    if (typeof d !== 'string' || d === '') return;
    open();
    sse.delta(d, renderDelta);
  };
  lc.gateway.call(route, payload, ex.requestId, opts).then(
    (reply) => {
      if (ex.aborted) return sse.abandon();
      open();
      const r = reply as { finish_reason: string; usage: Usage };
      let tail = event([shape.last(r.finish_reason)]);
      if (body.stream_options?.include_usage) tail += event([], r.usage);
      sse.end(`${tail}data: [DONE]\n\n`);
    },
    (err: unknown) => {
      const e: TabAgentError = toTabAgentError(err);
      if (ex.aborted) return sse.abandon();
      if (!opened) return ex.fail(e);
      lc.log.warn('stream failed after it started', { request_id: ex.requestId, code: e.code, err: e.message });
      sse.end(`data: ${JSON.stringify(openAiErrorBody(e, ex.requestId))}\n\n`);
    },
  );
}
