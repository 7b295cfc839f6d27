import t from 'tap';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { unifyKvCache } from '../../src/runtime/inference/native-build.js';

t.test('the addon source is switched to one shared KV cache, once', async (t) => {
  const dir = t.testdir({ 'AddonContext.cpp': 'context_params.swa_full = false;\n    context_params.kv_unified = false;\n' });
  const file = path.join(dir, 'AddonContext.cpp');
  t.equal(await unifyKvCache(file), true, 'patched');
  t.match(await readFile(file, 'utf8'), /kv_unified = true;/);
  t.notMatch(await readFile(file, 'utf8'), /kv_unified = false;/);
  t.equal(await unifyKvCache(file), false, 'a second run changes nothing');
});

t.test('a source that no longer has the line is refused, naming the file', async (t) => {
  const dir = t.testdir({ 'AddonContext.cpp': 'context_params.n_ctx = 4096;\n' });
  const file = path.join(dir, 'AddonContext.cpp');
  await t.rejects(unifyKvCache(file), { code: 'BACKEND_ERROR', message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} no longer sets`) });
  t.equal(await readFile(file, 'utf8'), 'context_params.n_ctx = 4096;\n', 'the file is left as it was');
});

t.test('the installed node-llama-cpp still has the line this build changes', async (t) => {
  const addon = path.resolve(import.meta.dirname, '../../node_modules/node-llama-cpp/llama/addon/AddonContext.cpp');
  t.match(await readFile(addon, 'utf8'), /context_params\.kv_unified = (false|true);/, 'a node-llama-cpp upgrade that moves it fails here, not at build time');
});
