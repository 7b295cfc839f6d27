import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeTestModel } from '../../src/runtime/gguf/index.js';
import { InferenceEngine } from '../../src/runtime/inference/engine.js';
import type { GenerateInput, SamplingParams } from '../../src/runtime/inference/types.js';

const dir = await mkdtemp(path.join(tmpdir(), 'tabagent-engine-'));
const file = path.join(dir, 'tiny.gguf');
await writeTestModel(file, { size: 'tiny' });
const CONTEXT = 256;
const engine = new InferenceEngine({ threads: 1, contextSize: CONTEXT, maxSequences: 4 });
t.teardown(async () => {
  await engine.dispose();
  await rm(dir, { recursive: true, force: true });
});
const info = await engine.load('tiny', file);

const prompt = (text: string): GenerateInput => ({ kind: 'completion', prompt: text });
/** Random weights may sample the end token at any step: a grammar for a long JSON array keeps a generation going. */
const LONG = { type: 'array', items: { type: 'boolean' }, minItems: 400 };
function run(input: GenerateInput, params: SamplingParams, onText: (d: string) => void = () => {}, signal = new AbortController().signal) {
  return engine.generate('tiny', input, params, onText, signal);
}

t.test('load is idempotent and reports the model', async (t) => {
  t.same(await engine.load('tiny', file), info);
  t.match(info, { id: 'tiny', architecture: 'llama', embedding_length: 64, quantization: 'F32', has_chat_template: true });
  t.same(engine.loaded(), ['tiny']);
});

t.test('tokens stream before the generation ends; the deltas add up to the text', async (t) => {
  const deltas: string[] = [];
  let resolved = false;
  const pending = run(prompt('hello the world'), { max_tokens: 40, seed: 3 }, (d) => {
    t.notOk(resolved, 'delta before the end');
    deltas.push(d);
  });
  const r = await pending.then((x) => ((resolved = true), x));
  t.ok(deltas.length > 1, `${deltas.length} deltas`);
  t.equal(deltas.join(''), r.text);
  t.ok(r.ttft_ms >= 0);
});

t.test('max_tokens ends with length and usage counts real tokens', async (t) => {
  const r = await run(prompt('the'), { max_tokens: 7, seed: 1 });
  t.equal(r.finish_reason, 'length');
  t.equal(r.usage.completion_tokens, 7);
  t.equal(r.usage.prompt_tokens, (await engine.tokenize('tiny', 'the')).length + 1, 'prompt tokens include BOS');
  t.equal(r.usage.total_tokens, r.usage.prompt_tokens + 7);
});

t.test('the same seed and settings give the same text; another seed differs', async (t) => {
  const params = { max_tokens: 32, seed: 1234, temperature: 1, top_k: 100, top_p: 1 };
  const a = await run(prompt('the the'), params);
  const b = await run(prompt('the the'), params);
  const c = await run(prompt('the the'), { ...params, seed: 99 });
  t.equal(a.text, b.text);
  t.not(a.text, c.text);
});

t.test('a stop sequence ends the text just before it and is not streamed', async (t) => {
  const params = { max_tokens: 48, seed: 77, temperature: 0 };
  const full = await run(prompt('hello'), params);
  t.ok(full.text.length > 6, 'enough text to cut');
  const stop = full.text.slice(4, 6);
  const streamed: string[] = [];
  const cut = await run(prompt('hello'), { ...params, stop: [stop] }, (d) => streamed.push(d));
  t.equal(cut.finish_reason, 'stop');
  t.equal(cut.text, full.text.slice(0, full.text.indexOf(stop)));
  t.equal(streamed.join(''), cut.text, 'the stop text never reached the stream');
  t.ok(cut.usage.completion_tokens < full.usage.completion_tokens);
});

t.test('cancel mid-stream resolves cancelled promptly and frees the sequence', async (t) => {
  const engine1 = new InferenceEngine({ threads: 1, contextSize: CONTEXT, maxSequences: 1 });
  t.teardown(() => engine1.dispose());
  await engine1.load('tiny', file);
  const ac = new AbortController();
  let deltas = 0;
  let atAbort = 0;
  const r = await engine1.generate('tiny', prompt('the'), { max_tokens: 200, seed: 5 }, () => {
    if (++deltas === 3) {
      ac.abort();
      atAbort = deltas;
    }
  }, ac.signal);
  t.equal(r.finish_reason, 'cancelled');
  t.ok(r.usage.completion_tokens < 200, `stopped after ${r.usage.completion_tokens} tokens`);
  t.ok(deltas <= atAbort + 1, 'at most one more token after the abort');
  // the only slot was freed: a new generation runs to completion
  const next = await engine1.generate('tiny', prompt('the'), { max_tokens: 5, json_schema: LONG }, () => {}, new AbortController().signal);
  t.equal(next.usage.completion_tokens, 5);
  const pre = new AbortController();
  pre.abort();
  t.match(await engine1.generate('tiny', prompt('x'), {}, () => {}, pre.signal), { finish_reason: 'cancelled', text: '' });
});

t.test('16 concurrent generations (more than the 4 slots) all complete, and batched output equals solo output', async (t) => {
  const params = (i: number) => ({ max_tokens: 12 + i, seed: i, temperature: 0 });
  const solo = await run(prompt(`the ${5}`), params(5));
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => run(prompt(`the ${i}`), params(i))));
  results.forEach((r, i) => t.ok(r.finish_reason === 'length' ? r.usage.completion_tokens === 12 + i : r.finish_reason === 'stop', `stream ${i}`));
  t.equal(results[5].text, solo.text, 'greedy text does not depend on batch neighbours');
});

t.test('chat uses the model template', async (t) => {
  const r = await run({ kind: 'chat', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }] }, { max_tokens: 6 });
  // <s>, <|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n
  t.ok(r.usage.prompt_tokens > 20, `${r.usage.prompt_tokens} prompt tokens`);
  t.equal(r.usage.completion_tokens <= 6, true);
  await t.rejects(run({ kind: 'chat', messages: [] }, {}), { code: 'VALIDATION_ERROR', message: /messages/ });
});

t.test('json_schema output parses and matches the schema', async (t) => {
  const schema = { type: 'object', properties: { ok: { type: 'boolean' }, kind: { enum: ['alpha', 'beta'] } }, required: ['ok', 'kind'] };
  for (const seed of [1, 2, 3]) {
    const r = await run(prompt('json:'), { max_tokens: 200, seed, json_schema: schema });
    const value = JSON.parse(r.text);
    t.type(value.ok, 'boolean');
    t.ok(['alpha', 'beta'].includes(value.kind));
  }
  const any = await run(prompt('json:'), { max_tokens: 300, seed: 4, temperature: 0, json_object: true });
  if (any.finish_reason === 'stop') t.doesNotThrow(() => JSON.parse(any.text), 'json_object output parses');
});

t.test('embeddings have the model dimension; tokenize and detokenize round-trip', async (t) => {
  const { vectors, tokens: counted } = await engine.embed('tiny', ['hello', 'the world']);
  t.equal(vectors.length, 2);
  t.equal(counted, (await engine.tokenize('tiny', 'hello')).length + (await engine.tokenize('tiny', 'the world')).length, 'token count for usage');
  t.ok(vectors.every((v) => v.length === 64 && v.every(Number.isFinite)));
  const tokens = await engine.tokenize('tiny', 'the theme');
  t.equal(await engine.detokenize('tiny', tokens), 'the theme');
  await t.rejects(engine.detokenize('tiny', [999999]), { code: 'VALIDATION_ERROR', message: /tokens/ });
});

t.test('bad input gets clear errors', async (t) => {
  const long = 'the '.repeat(400);
  await t.rejects(run(prompt(long), {}), { code: 'BAD_REQUEST', message: /prompt is \d+ tokens but the model's context holds 256/ });
  await t.rejects(run(prompt('x'), { temperature: -1 }), { code: 'VALIDATION_ERROR', message: /temperature/ });
  await t.rejects(run(prompt('x'), { max_tokens: 0 }), { code: 'VALIDATION_ERROR', message: /max_tokens/ });
  await t.rejects(engine.generate('nope', prompt('x'), {}, () => {}, new AbortController().signal), { code: 'MODEL_NOT_LOADED' });
  // the engine keeps serving after the errors
  t.equal((await run(prompt('x'), { max_tokens: 3, json_schema: LONG })).usage.completion_tokens, 3);
});

t.test('a long generation reaching the end of the context stops with length', async (t) => {
  const r = await run(prompt('the'), { seed: 2, temperature: 1 });
  if (r.finish_reason === 'length') t.equal(r.usage.total_tokens, CONTEXT - 1);
  else t.equal(r.finish_reason, 'stop');
});

t.test('unload cancels running generations and frees the model', async (t) => {
  const engine2 = new InferenceEngine({ threads: 1, contextSize: CONTEXT, maxSequences: 2 });
  t.teardown(() => engine2.dispose());
  await engine2.load('m', file);
  let first!: () => void;
  const started = new Promise<void>((r) => (first = r));
  const running = engine2.generate('m', prompt('the'), { max_tokens: 250 }, () => first(), new AbortController().signal);
  await started;
  t.equal(await engine2.unload('m'), true);
  t.equal((await running).finish_reason, 'cancelled');
  t.same(engine2.loaded(), []);
  await t.rejects(engine2.tokenize('m', 'x'), { code: 'MODEL_NOT_LOADED' });
  await engine2.load('m', file);
  t.equal((await engine2.generate('m', prompt('the'), { max_tokens: 2 }, () => {}, new AbortController().signal)).usage.completion_tokens, 2);
});
