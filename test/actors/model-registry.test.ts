import t from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ModelRegistryActor } from '../../src/actors/model-registry.js';
import { Addresses } from '../../src/bus/addresses.js';
import { ConfigStore, loadConfig } from '../../src/runtime/config.js';
import { writeTestModel } from '../../src/runtime/gguf/index.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createInferencePool, startServer, type CoreActorFactory, type RunningServer } from '../../src/server.js';
import '../../src/transports/register.js';
import { settle } from '../helpers/wait.js';
import type { TapTest } from '../helpers/tap.js';

// The real server in process (native mode, no stdio): router, storage and model registry over the real worker pool.
const root = await mkdtemp(path.join(tmpdir(), 'tabagent-registry-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
const modelsDir = path.join(root, 'models');
await mkdir(modelsDir);
await writeTestModel(path.join(modelsDir, 'alpha.gguf'), { size: 'tiny', seed: 1 });
await writeTestModel(path.join(modelsDir, 'beta.gguf'), { size: 'tiny', seed: 2 });
await writeFile(path.join(modelsDir, 'broken.gguf'), 'GGUF but not really');

let serverNo = 0;
async function start(t: TapTest, inference: Record<string, unknown> = {}, replaceActors: CoreActorFactory[] = []) {
  const flags = {
    mode: 'native',
    native: { stdio: false },
    data_dir: path.join(root, `data-${++serverNo}`),
    models_dir: modelsDir,
    inference: { workers: 1, max_sequences: 4, context_size: 512, ...inference },
  };
  const opts = { flags, env: {} };
  const store = new ConfigStore(loadConfig(opts), opts);
  const server: RunningServer = await startServer(store, createLogger('warn'), { replaceActors });
  t.teardown(() => server.stop());
  const gw = server.context.gateway('test');
  let n = 0;
  const call = <T = any>(route: string, payload?: unknown, o: Parameters<typeof gw.call>[3] = {}): Promise<T> => gw.call(route, payload, `r${++n}`, o) as Promise<T>;
  return { server, call, gw };
}

const hi = { messages: [{ role: 'user', content: 'hi' }] };
/** Random weights may sample the end token at any step: a grammar for a long JSON array keeps a generation going. */
const LONG = { response_format: { type: 'json_schema', json_schema: { schema: { type: 'array', items: { type: 'boolean' }, minItems: 400 } } } };
// Servers start slowly (worker threads, model loads): subtests that need no special config share this one.
const shared = await start(t);

t.test('models lists the models dir; model_info reads the GGUF header; unknown ids name the available ones', async (t) => {
  const { call } = shared;
  const { models } = await call('models');
  t.same(models.map((m: { id: string }) => m.id), ['alpha', 'beta', 'broken']);
  t.match(models.find((m: { id: string }) => m.id === 'broken'), { error: /not a valid GGUF/ }, 'an unreadable file is listed with its error');
  t.match(await call('model_info', { model_id: 'alpha' }), { id: 'alpha', architecture: 'llama', embedding_length: 64, context_length: 2048, quantization: 'F32', loaded: false });
  await t.rejects(call('chat', { model: 'gamma', ...hi }), { code: 'MODEL_NOT_FOUND', message: /'gamma' not found; available: alpha, beta, broken/ });
});

t.test('bad parameters are VALIDATION_ERROR naming the field; a prompt past the context is a clear error', async (t) => {
  const { call } = shared;
  await t.rejects(call('chat', { model: 'alpha', ...hi, temperature: 3 }), { code: 'VALIDATION_ERROR', message: /temperature must be at most 2/ });
  await t.rejects(call('generate', { model: 'alpha', prompt: 'x', max_tokens: 0 }), { code: 'VALIDATION_ERROR', message: /max_tokens must be at least 1/ });
  await t.rejects(call('chat', { model: 'alpha', messages: [] }), { code: 'VALIDATION_ERROR', message: /messages must not be empty/ });
  await t.rejects(call('generate', { model: 'alpha', prompt: 'the '.repeat(600) }), { code: 'BAD_REQUEST', message: /prompt is \d+ tokens but the model's context holds 512/ });
});

t.test('auto-load off: MODEL_NOT_LOADED says how to load; load_model, get_loaded_models, unload_model', async (t) => {
  const { call } = await start(t, { auto_load: false, keep_alive_s: 600 });
  await t.rejects(call('chat', { model: 'alpha', ...hi }), { code: 'MODEL_NOT_LOADED', message: /load_model.*POST \/v1\/models\/load/ });
  const progress: unknown[] = [];
  const loaded = await call('load_model', { model_id: 'alpha', stream: true }, { onChunk: (c) => progress.push(c) });
  t.match(loaded, { id: 'alpha', in_flight: 0 });
  t.same(progress.at(-1), { model_id: 'alpha', workers_ready: 1, workers: 1 }, 'progress events while loading');
  const r = await call('chat', { model: 'alpha', ...hi, max_tokens: 4, ...LONG });
  t.equal(r.usage.completion_tokens, 4);
  const list = await call('get_loaded_models');
  t.equal(list.models.length, 1);
  t.ok(Date.parse(list.models[0].expires_at) > Date.now() + 500_000, 'expiry follows keep_alive_s');
  t.ok(list.models[0].memory_bytes > 0);
  t.same(await call('unload_model', { model_id: 'alpha' }), { model_id: 'alpha', unloaded: true });
  t.same((await call('get_loaded_models')).models, []);
  await t.rejects(call('chat', { model: 'alpha', ...hi }), { code: 'MODEL_NOT_LOADED' });
});

t.test('a corrupt model fails to load cleanly and the others keep working', async (t) => {
  const { call } = shared;
  await t.rejects(call('load_model', { model_id: 'broken' }), { code: 'BAD_REQUEST', message: /not a valid GGUF model/ });
  const r = await call('generate', { model: 'alpha', prompt: 'the', max_tokens: 3, ...LONG });
  t.equal(r.usage.completion_tokens, 3, 'alpha still generates');
});

t.test('past max_loaded_models the least recently used idle model is evicted; an idle model goes after keep_alive_s', async (t) => {
  const { call } = await start(t, { max_loaded_models: 1, keep_alive_s: 1 });
  await call('generate', { model: 'alpha', prompt: 'a', max_tokens: 2 });
  await call('generate', { model: 'beta', prompt: 'b', max_tokens: 2 });
  t.same((await call('get_loaded_models')).models.map((m: { id: string }) => m.id), ['beta'], 'alpha was evicted for beta');
  const left = await settle(async () => (await call('get_loaded_models')).models.length, (n) => n === 0, 30_000, 200);
  t.equal(left, 0, 'beta unloaded once idle');
});

t.test('a model that cannot fit in free memory is refused with both figures', async (t) => {
  const lowMemory: CoreActorFactory = {
    address: Addresses.models,
    create: (ctx) =>
      new ModelRegistryActor(ctx.bus, ctx.log, {
        inference: ctx.store.config.inference,
        modelsDir,
        models: [],
        createBackend: () => createInferencePool(ctx.store.config, ctx.log),
        freeMemory: () => 1024 * 1024,
      }),
  };
  const { call } = await start(t, {}, [lowMemory]);
  await t.rejects(call('load_model', { model_id: 'alpha' }), { code: 'INSUFFICIENT_MEMORY', message: /needs about \d+ MiB .* but only 1 MiB are free/ });
});

t.test('stop_generation ends a stream as cancelled; stats and default params', async (t) => {
  const { call } = await start(t);
  const chunks: string[] = [];
  const pending = call('chat', { model: 'alpha', ...hi, max_tokens: 2000, stream: true, ...LONG }, {
    onChunk: (c) => {
      if (chunks.push((c as { delta: string }).delta) === 2) void call('stop_generation', { request_id: 'r1' });
    },
  });
  const r = await pending;
  t.equal(r.finish_reason, 'cancelled');
  t.equal(r.message.content, chunks.join(''), 'the reply holds what was streamed');

  await call('set_params', { params: { temperature: 0, max_tokens: 6 } });
  t.same(await call('get_params'), { params: { temperature: 0, max_tokens: 6 } });
  const a = await call('generate', { model: 'alpha', prompt: 'the', ...LONG });
  const b = await call('generate', { model: 'alpha', prompt: 'the', ...LONG });
  t.equal(a.usage.completion_tokens, 6, 'max_tokens from the defaults');
  t.equal(a.text, b.text, 'temperature 0 from the defaults: greedy, repeatable');
  await call('set_params', { params: { temperature: null } });
  t.same(await call('get_params'), { params: { max_tokens: 6 } }, 'null resets a field');

  const stats = await call('get_stats');
  const generated = stats.models.alpha.requests - 1;
  t.ok(generated >= 2);
  t.match(stats.models.alpha, { completed: generated, cancelled: 1, failed: 0 });
  t.ok(stats.models.alpha.completion_tokens >= 2 + 12, 'tokens of every request are counted');
  t.ok(stats.models.alpha.ttft_ms.p50 > 0);
  t.same(stats.queue_depth, { interactive: 0, normal: 0, background: 0 });
});

t.test('embeddings and tokenize through the registry', async (t) => {
  const { call } = shared;
  const e = await call('embeddings', { model: 'alpha', input: ['one', 'two'] });
  t.equal(e.data.length, 2);
  t.equal(e.data[1].embedding.length, 64);
  t.ok(e.usage.prompt_tokens >= 2);
  const { tokens } = await call('tokenize', { model: 'alpha', text: 'the theme' });
  t.same(await call('detokenize', { model: 'alpha', tokens }), { text: 'the theme' });
});
