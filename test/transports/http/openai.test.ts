/** The official `openai` npm client against the running server: chat (plain and streamed), completions, embeddings, models, and an error. */
import OpenAI from 'openai';
import t from 'tap';
import { startTestServer } from './fixture.js';

const server = await startTestServer();
t.teardown(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 60_000 });

t.test('chat completion', async (t) => {
  const res = await client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8, temperature: 0 });
  t.equal(res.object, 'chat.completion');
  t.equal(res.choices.length, 1);
  t.equal(res.choices[0]!.message.role, 'assistant');
  t.type(res.choices[0]!.message.content, 'string');
  t.ok(['stop', 'length'].includes(res.choices[0]!.finish_reason));
  t.ok(res.usage!.completion_tokens > 0 && res.usage!.completion_tokens <= 8);
  t.equal(res.usage!.total_tokens, res.usage!.prompt_tokens + res.usage!.completion_tokens);
});

t.test('chat completion with content parts and a developer message', async (t) => {
  const res = await client.chat.completions.create({
    model: server.model,
    messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] },
    ],
    max_completion_tokens: 4,
  });
  t.ok(res.usage!.completion_tokens <= 4, 'max_completion_tokens is honoured');
});

t.test('streamed chat completion', async (t) => {
  const stream = await client.chat.completions.create({
    model: server.model,
    messages: [{ role: 'user', content: 'Count' }],
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish: string | null = null;
  let usage;
  let role;
  for await (const chunk of stream) {
    t.equal(chunk.object, 'chat.completion.chunk');
    chunks++;
    const choice = chunk.choices[0];
    if (choice?.delta.role) role = choice.delta.role;
    if (choice?.delta.content) text += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  t.equal(role, 'assistant');
  t.ok(chunks >= 3, `several chunks (${chunks})`);
  t.ok(['stop', 'length'].includes(finish!));
  t.ok(usage && usage.completion_tokens > 0, 'include_usage adds a usage chunk');
  t.type(text, 'string');
});

t.test('completion, plain and streamed', async (t) => {
  const res = await client.completions.create({ model: server.model, prompt: 'Once upon a time', max_tokens: 6 });
  t.equal(res.object, 'text_completion');
  t.type(res.choices[0]!.text, 'string');
  const stream = await client.completions.create({ model: server.model, prompt: 'Once', max_tokens: 6, stream: true });
  let finish;
  for await (const chunk of stream) if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  t.ok(finish);
});

t.test('embeddings, base64 (the client default) and float', async (t) => {
  const b64 = await client.embeddings.create({ model: server.model, input: ['hello', 'world'] });
  t.equal(b64.object, 'list');
  t.equal(b64.data.length, 2);
  t.ok(Array.isArray(b64.data[0]!.embedding) && b64.data[0]!.embedding.length > 0, 'the client decodes base64 vectors');
  const float = await client.embeddings.create({ model: server.model, input: 'hello', encoding_format: 'float' });
  t.equal(float.data.length, 1);
  t.same(
    float.data[0]!.embedding.map((x) => Math.fround(x)),
    b64.data[0]!.embedding.map((x) => Math.fround(x)),
    'both encodings carry the same vector',
  );
});

t.test('models: list and retrieve', async (t) => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  t.ok(ids.includes(server.model), `${server.model} is listed`);
  t.equal(list.data[0]!.object, 'model');
  const one = await client.models.retrieve(server.model);
  t.equal(one.id, server.model);
});

t.test('an unknown model is a 404 the client parses', async (t) => {
  const err = await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.NotFoundError, 'NotFoundError');
  const e = err as InstanceType<typeof OpenAI.APIError>;
  t.equal(e.status, 404);
  t.equal(e.code, 'model_not_found');
  t.equal(e.type, 'invalid_request_error');
  t.match(e.message, /no-such-model/);
});

t.test('a bad request names the field', async (t) => {
  const err = await client.chat.completions.create({ model: server.model, messages: [{ role: 'user', content: 'x' }], temperature: 7 }).catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.BadRequestError);
  const e = err as InstanceType<typeof OpenAI.APIError>;
  t.equal(e.param, 'temperature');
  t.match(e.message, /temperature must be <= 2/);
  const noTools = await client.chat.completions
    .create({ model: server.model, messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] })
    .catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
  t.equal((noTools as InstanceType<typeof OpenAI.APIError>).status, 400);
  t.match((noTools as Error).message, /tools/);
});
