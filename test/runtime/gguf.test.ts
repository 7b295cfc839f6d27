import t from 'tap';
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { getLlama, LlamaCompletion, resolveChatWrapper } from 'node-llama-cpp';
import type { Test } from 'tap';
import { TabAgentError } from '../../src/protocol/errors.js';
import { readGguf, readGgufMetadata, writeTestModel } from '../../src/runtime/gguf/index.js';
import { InferenceEngine } from '../../src/runtime/inference/engine.js';

const dir = await mkdtemp(path.join(tmpdir(), 'tabagent-gguf-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const tiny = path.join(dir, 'tiny.gguf');
const tinyQ8 = path.join(dir, 'tiny-q8.gguf');
await writeTestModel(tiny, { size: 'tiny', type: 'f32', seed: 7 });
await writeTestModel(tinyQ8, { size: 'tiny', type: 'q8_0', seed: 7 });

t.test('the test model is deterministic from its seed', async (t) => {
  const again = path.join(dir, 'again.gguf');
  const other = path.join(dir, 'other.gguf');
  await writeTestModel(again, { size: 'tiny', seed: 7 });
  await writeTestModel(other, { size: 'tiny', seed: 8 });
  t.ok((await readFile(tiny)).equals(await readFile(again)), 'same seed, same bytes');
  t.notOk((await readFile(tiny)).equals(await readFile(other)), 'another seed, other weights');
});

t.test('metadata reader describes the written model', async (t) => {
  const f32 = await readGgufMetadata(tiny);
  t.match(f32, {
    architecture: 'llama',
    context_length: 2048,
    embedding_length: 64,
    block_count: 2,
    vocab_size: 274,
    quantization: 'F32',
    file_type: 0,
    has_chat_template: true,
  });
  t.ok(f32.parameters > 100_000 && f32.parameters < 200_000, `parameters ${f32.parameters}`);
  const q8 = await readGgufMetadata(tinyQ8);
  t.equal(q8.quantization, 'Q8_0');
  t.equal(q8.parameters, f32.parameters, 'quantization keeps the parameter count');
  t.ok(q8.file_size < f32.file_size / 2, 'Q8_0 is much smaller');
  const raw = await readGguf(tiny);
  t.equal(raw.version, 3);
  t.same(raw.metadata['tokenizer.ggml.tokens'], { arrayOf: 'STRING', length: 274 }, 'long arrays are summarised');
  t.ok(raw.tensors.some((x) => x.name === 'blk.1.ffn_down.weight'));
});

t.test('the medium model matches the reference shape (header only)', async (t) => {
  const medium = path.join(dir, 'medium-q8.gguf');
  await writeTestModel(medium, { size: 'medium', type: 'q8_0' });
  const info = await readGgufMetadata(medium);
  t.equal(info.embedding_length, 512);
  t.equal(info.block_count, 8);
  t.ok(Math.abs(info.parameters - 25.6e6) < 0.1e6, `${info.parameters} parameters`);
  t.ok(Math.abs(info.file_size / 2 ** 20 - 26) < 1, `${(info.file_size / 2 ** 20).toFixed(1)} MiB`);
  await rm(medium);
});

t.test('node-llama-cpp loads both types and generates; the chat template resolves to ChatML', async (t) => {
  const llama = await getLlama({ gpu: false, logLevel: 'error' as never });
  t.teardown(() => llama.dispose());
  for (const file of [tiny, tinyQ8]) {
    const model = await llama.loadModel({ modelPath: file });
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
    let tokens = 0;
    await completion.generateCompletion('hello the world', { maxTokens: 8, onToken: (t) => (tokens += t.length) });
    t.equal(tokens, 8, `${path.basename(file)} generated 8 tokens`);
    t.same(model.tokenize('the'), [272], 'SPM word pieces merge ("▁the")');
    t.same(model.tokenize('\u00e9').slice(-2), [0xc3 + 5, 0xa9 + 5], 'characters outside the vocabulary fall back to bytes');
    t.equal(resolveChatWrapper(model).wrapperName, 'ChatML', 'the GGUF chat template resolves to ChatML');
    await context.dispose();
    await model.dispose();
  }
  const engine = new InferenceEngine({ threads: 1, contextSize: 256, maxSequences: 1 });
  t.teardown(() => engine.dispose());
  await engine.load('tiny', tiny);
  t.equal((await engine.info('tiny')).has_chat_template, true);
});

async function expectBad(t: Test, file: string, pattern: RegExp): Promise<void> {
  const err = await readGgufMetadata(file).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof TabAgentError, 'a TabAgentError');
  t.equal((err as TabAgentError).code, 'BAD_REQUEST');
  t.match((err as TabAgentError).message, pattern);
  t.match((err as TabAgentError).message, file, 'names the file');
}

t.test('truncated or corrupt files give clear errors', async (t) => {
  const cut = path.join(dir, 'cut.gguf');
  await copyFile(tiny, cut);
  await truncate(cut, 300_000);
  await expectBad(t, cut, /truncated: tensor .* needs bytes up to \d+ but the file has 300000 bytes/);

  const headerCut = path.join(dir, 'header-cut.gguf');
  await copyFile(tiny, headerCut);
  await truncate(headerCut, 1000);
  await expectBad(t, headerCut, /ends inside its header/);

  const notGguf = path.join(dir, 'not.gguf');
  await writeFile(notGguf, 'this is plainly not a model file, just text');
  await expectBad(t, notGguf, /bad magic/);

  const badVersion = path.join(dir, 'v9.gguf');
  const bytes = await readFile(tiny);
  bytes.writeUInt32LE(9, 4);
  await writeFile(badVersion, bytes);
  await expectBad(t, badVersion, /unsupported GGUF version 9/);

  const empty = path.join(dir, 'empty.gguf');
  await writeFile(empty, '');
  await expectBad(t, empty, /ends inside its header/);

  const missing = await readGgufMetadata(path.join(dir, 'nope.gguf')).catch((e: TabAgentError) => e);
  t.equal((missing as TabAgentError).code, 'NOT_FOUND');
});

t.test('the engine refuses a corrupt model with a clear error and keeps working', async (t) => {
  const engine = new InferenceEngine({ threads: 1, contextSize: 128, maxSequences: 2 });
  t.teardown(() => engine.dispose());
  const cut = path.join(dir, 'cut2.gguf');
  await copyFile(tiny, cut);
  await truncate(cut, 200_000);
  await t.rejects(engine.load('cut2', cut), { code: 'BAD_REQUEST', message: /truncated/ });
  t.same(engine.loaded(), [], 'nothing half-loaded stays registered');
  await engine.load('tiny', tiny);
  // a grammar for a long JSON array: random weights may otherwise sample the end token within 4 tokens
  const long = { type: 'array', items: { type: 'boolean' }, minItems: 400 };
  const r = await engine.generate('tiny', { kind: 'completion', prompt: 'the' }, { max_tokens: 4, json_schema: long }, () => {}, new AbortController().signal);
  t.equal(r.usage.completion_tokens, 4, 'the engine still generates');
});
