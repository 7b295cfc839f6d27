/** Baseline child: raw node-llama-cpp generation (one context, one sequence, the given threads); one generation per stdin line. */
import { getLlama } from 'node-llama-cpp';
import { serveLines } from './child.js';

const [modelPath, threadsArg, maxTokensArg, prompt] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1);
const maxTokens = Number(maxTokensArg ?? 32);
const llama = await getLlama({ gpu: false, logLevel: 'error' as never });
const model = await llama.loadModel({ modelPath: modelPath! });
// The server's default context size (inference.context_size), so both allocate the same KV cache per sequence.
const context = await model.createContext({ threads, contextSize: 4096, sequences: 1 });
const sequence = context.getSequence();
// The ChatML text the server's chat template produces for one user message.
const tokens = model.tokenize(`<|im_start|>user\n${prompt ?? 'Hello'}<|im_end|>\n<|im_start|>assistant\n`, true);

async function generate(seed: number): Promise<{ tokens: number; ttft_ms: number; ms: number }> {
  await sequence.clearHistory();
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  // The server's sampling for a request that sets only temperature and seed (its engine defaults).
  for await (const token of sequence.evaluate(tokens, { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed })) {
    // An end-of-generation token ends the reply, as it does in the server.
    if (model.isEogToken(token)) break;
    if (n === 0) first = performance.now() - t0;
    if (++n >= maxTokens) break;
  }
  return { tokens: n, ttft_ms: first, ms: performance.now() - t0 };
}

let seed = 7;
serveLines(() => generate(seed++), async () => {
  await context.dispose();
  await model.dispose();
  process.exit(0);
});
process.on('SIGTERM', () => process.exit(0));
