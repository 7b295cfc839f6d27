import t from 'tap';
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeTestModel } from '../../src/runtime/gguf/index.js';
import type { GenerateInput, GenerateResult } from '../../src/runtime/inference/types.js';
import { InferencePool, planThreads, type InferencePoolOptions } from '../../src/runtime/pool/pool.js';

const dir = await mkdtemp(path.join(tmpdir(), 'tabagent-pool-'));
const tiny = path.join(dir, 'tiny.gguf');
const small = path.join(dir, 'small.gguf');
await writeTestModel(tiny, { size: 'tiny' });
await writeTestModel(small, { size: 'small' });
t.teardown(() => rm(dir, { recursive: true, force: true }));

const chat: GenerateInput = { kind: 'chat', messages: [{ role: 'user', content: 'hello there' }] };
/** Random weights may sample the end token at any step: a grammar for a long JSON array keeps a generation going. */
const LONG = { json_schema: { type: 'array', items: { type: 'boolean' }, minItems: 400 } };

async function openPool(opts: Partial<InferencePoolOptions> = {}): Promise<InferencePool> {
  const pool = new InferencePool({
    workers: 1,
    threads: 1,
    contextSize: 2048,
    maxSequences: 4,
    queueLimits: { interactive: 16, normal: 16, background: 16 },
    agingMs: 60_000,
    ...opts,
  });
  t.teardown(() => pool.close());
  await pool.start();
  await pool.load('tiny', tiny);
  return pool;
}

// Pools start slowly (a worker thread each, and node-llama-cpp tests its binary per thread): the subtests share two.
/** One worker with one sequence: saturated by a single generation. */
const narrow = await openPool({ maxSequences: 1, queueLimits: { interactive: 4, normal: 4, background: 3 } });
/** Two workers with eight sequences each. */
const wide = await openPool({ workers: 2, maxSequences: 8 });

/** A generation that holds its sequence until aborted (the tiny model's context allows ~2000 tokens). */
function blocker(pool: InferencePool, priority: 'interactive' | 'normal' | 'background' = 'normal') {
  const ac = new AbortController();
  let firstToken!: () => void;
  const started = new Promise<void>((r) => (firstToken = r));
  const done = pool.generate('tiny', { kind: 'completion', prompt: 'the' }, { max_tokens: 2000, temperature: 1, seed: 1, ...LONG }, {
    priority,
    signal: ac.signal,
    onText: () => firstToken(),
  });
  return { ac, started, done };
}

t.test('the thread plan never oversubscribes the cores by default', async (t) => {
  t.same(planThreads({}, 2), { workers: 2, threads: 1, cores: 2, oversubscribed: false });
  t.same(planThreads({ threads: 2 }, 2), { workers: 1, threads: 2, cores: 2, oversubscribed: false });
  t.same(planThreads({ threads: 1 }, 1), { workers: 1, threads: 1, cores: 1, oversubscribed: false });
  t.equal(planThreads({ workers: 4, threads: 2 }, 2).oversubscribed, true, 'an explicit config that oversubscribes is flagged');
});

t.test('tokens of a stream arrive before its end, and add up to the text', async (t) => {
  const pool = wide;
  const deltas: string[] = [];
  let ended = false;
  const r = await pool.generate('tiny', chat, { max_tokens: 24, seed: 5, ...LONG }, {
    onText: (d) => {
      t.notOk(ended, 'a delta before the end');
      deltas.push(d);
    },
  });
  ended = true;
  t.ok(deltas.length > 1, `${deltas.length} deltas`);
  t.equal(deltas.join(''), r.text);
  t.equal(r.usage.completion_tokens, 24);
  t.equal(r.finish_reason, 'length');
});

t.test('a fixed seed repeats the same text; embeddings have the model dimension', async (t) => {
  const pool = wide;
  const a = await pool.generate('tiny', chat, { max_tokens: 20, seed: 42, temperature: 0.9 });
  const b = await pool.generate('tiny', chat, { max_tokens: 20, seed: 42, temperature: 0.9 });
  const c = await pool.generate('tiny', chat, { max_tokens: 20, seed: 43, temperature: 0.9 });
  t.equal(a.text, b.text, 'same seed, same text (whichever worker ran it)');
  t.not(a.text, c.text, 'another seed, another text');
  const e = await pool.embed('tiny', ['one', 'two words']);
  t.equal(e.vectors.length, 2);
  t.ok(e.vectors.every((v) => v.length === 64), 'n_embd of the tiny model is 64');
  t.ok(e.tokens >= 2);
});

t.test('cancel mid-stream ends the generation as cancelled and frees its sequence', async (t) => {
  const pool = narrow;
  const b = blocker(pool);
  await b.started;
  b.ac.abort();
  const r = await b.done;
  t.equal(r.finish_reason, 'cancelled');
  t.ok(r.usage.completion_tokens < 2000, `stopped after ${r.usage.completion_tokens} tokens`);
  const next = await pool.generate('tiny', chat, { max_tokens: 5, ...LONG });
  t.equal(next.finish_reason, 'length', 'the only sequence serves the next request');
  t.equal(pool.stats().running, 0);
});

t.test('under saturation an interactive request overtakes queued background ones', async (t) => {
  const pool = narrow;
  const b = blocker(pool);
  await b.started;
  const order: string[] = [];
  const queued: Promise<GenerateResult>[] = [];
  for (const name of ['bg1', 'bg2', 'bg3']) {
    queued.push(pool.generate('tiny', chat, { max_tokens: 2 }, { priority: 'background', onStart: () => order.push(name) }));
  }
  queued.push(pool.generate('tiny', chat, { max_tokens: 2 }, { priority: 'interactive', onStart: () => order.push('interactive') }));
  t.same(pool.stats().queued, { interactive: 1, normal: 0, background: 3 });
  b.ac.abort();
  await Promise.all([b.done, ...queued]);
  t.same(order, ['interactive', 'bg1', 'bg2', 'bg3'], 'interactive first, then background in FIFO order');
});

t.test('a full priority class answers BUSY with a retry-after hint; other classes still queue', async (t) => {
  const pool = narrow;
  const b = blocker(pool);
  await b.started;
  const queued = [1, 2, 3].map(() => pool.generate('tiny', chat, { max_tokens: 2 }, { priority: 'background' }));
  const err = await pool.generate('tiny', chat, { max_tokens: 2 }, { priority: 'background' }).catch((e: unknown) => e);
  t.match(err, { code: 'BUSY', message: /background.*full/, details: { priority: 'background', limit: 3 } });
  t.ok((err as { details: { retry_after_ms: number } }).details.retry_after_ms > 0, 'retry_after_ms is given');
  const interactive = pool.generate('tiny', chat, { max_tokens: 2 }, { priority: 'interactive' });
  b.ac.abort();
  await Promise.all([b.done, interactive, ...queued]);
});

t.test('16 concurrent streams all complete', async (t) => {
  const pool = wide;
  const results = await Promise.all(
    Array.from({ length: 16 }, (_, i) => pool.generate('tiny', { kind: 'completion', prompt: `stream ${i}` }, { max_tokens: 16, seed: i })),
  );
  t.equal(results.length, 16);
  for (const r of results) t.ok(r.finish_reason !== 'cancelled' && r.usage.completion_tokens > 0, `${r.finish_reason}, ${r.usage.completion_tokens} tokens`);
});

t.test('a corrupt or truncated file fails cleanly and the worker keeps serving', async (t) => {
  const pool = narrow;
  const bytes = await readFile(small);
  const truncated = path.join(dir, 'truncated.gguf');
  await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await t.rejects(pool.load('truncated', truncated), { code: 'BAD_REQUEST', message: /not a valid GGUF model.*truncated/ });
  const garbage = path.join(dir, 'garbage.gguf');
  await writeFile(garbage, 'this is not a model at all');
  await t.rejects(pool.load('garbage', garbage), { code: 'BAD_REQUEST', message: /not a valid GGUF model/ });
  const r = await pool.generate('tiny', chat, { max_tokens: 3, ...LONG });
  t.equal(r.usage.completion_tokens, 3, 'the same worker still generates');
  t.equal(pool.stats().worker_restarts, 0, 'no worker was lost');
});

t.test('a worker that dies is replaced: its requests fail, the pool keeps serving', async (t) => {
  const pool = narrow;
  const b = blocker(pool);
  await b.started;
  t.ok(await pool.restartWorker(pool.workerIds[0]!));
  await t.rejects(b.done, { code: 'BACKEND_ERROR', message: /worker.*stopped/ });
  const r = await pool.generate('tiny', chat, { max_tokens: 3, ...LONG });
  t.equal(r.usage.completion_tokens, 3, 'the replacement loaded the model and generates');
  t.equal(pool.stats().worker_restarts, 1);
});

t.test('unload frees the memory a model took', async (t) => {
  const pool = wide;
  const before = process.memoryUsage().rss;
  await pool.load('small', small);
  await pool.generate('small', chat, { max_tokens: 4 });
  const loaded = process.memoryUsage().rss;
  await pool.unload('small');
  const after = process.memoryUsage().rss;
  const took = loaded - before;
  t.ok(took > 16 * 1024 * 1024, `loading took ${Math.round(took / 1048576)} MiB (weights + KV cache)`);
  t.ok(after < loaded - took / 2, `unload gave back ${Math.round((loaded - after) / 1048576)} of ${Math.round(took / 1048576)} MiB`);
  await t.rejects(pool.generate('small', chat, { max_tokens: 2 }), { code: 'MODEL_NOT_LOADED' });
});
