/** Builds llama.cpp for this machine from the source node-llama-cpp ships, offline, with one KV cache shared by all sequences. */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TabAgentError } from '../../protocol/errors.js';

/**
 * node-llama-cpp 3.22 creates every context with `kv_unified = false`: each sequence gets its own slice
 * of the KV cache, and a decode of N sequences' tokens costs about twice what it costs with one shared
 * buffer (measured on the reference model: 8 tokens in 20 ms instead of 10). The prebuilt binaries
 * cannot change; a local build can, and node-llama-cpp then loads it in place of the prebuilt one.
 */
const SEPARATE = 'context_params.kv_unified = false;';
const UNIFIED = 'context_params.kv_unified = true;';

function packageDir(): string {
  // dist/index.js inside the package
  return path.resolve(path.dirname(fileURLToPath(import.meta.resolve('node-llama-cpp'))), '..');
}

/** Sets the shared KV cache in the addon's source; returns false when it already was. */
export async function unifyKvCache(addonSource: string): Promise<boolean> {
  const source = await readFile(addonSource, 'utf8');
  if (source.includes(UNIFIED)) return false;
  if (!source.includes(SEPARATE)) {
    throw new TabAgentError('BACKEND_ERROR', `${addonSource} no longer sets '${SEPARATE}': this node-llama-cpp version needs a new look before building`, { file: addonSource });
  }
  await writeFile(addonSource, source.replace(SEPARATE, UNIFIED));
  return true;
}

/**
 * Clones the llama.cpp release bundled with node-llama-cpp (no network) and compiles it and the addon for
 * this CPU (GGML_NATIVE), without GPU backends. Takes minutes; the server uses the build from its next start.
 */
export async function buildNativeLlama(out: (line: string) => void): Promise<void> {
  const dir = packageDir();
  const patched = await unifyKvCache(path.join(dir, 'llama', 'addon', 'AddonContext.cpp'));
  out(patched ? 'addon: one KV cache shared by all sequences (kv_unified = true)' : 'addon: already set to one shared KV cache');
  const cli = path.join(dir, 'dist', 'cli', 'cli.js');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'source', 'download', '--gpu', 'false', '--noUsageExample'], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new TabAgentError('BACKEND_ERROR', `building llama.cpp failed (node-llama-cpp source download exited with ${code}); cmake, make or ninja, and g++ are needed`);
}
