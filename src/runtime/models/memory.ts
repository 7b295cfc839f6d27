/** Memory estimate of a loaded model, for the check before a load: the mapped file once, plus each worker's KV cache. */
import type { GgufModelSummary } from '../gguf/index.js';

export interface MemoryPlan {
  /** Inference workers, each with its own contexts. */
  workers: number;
  contextsPerWorker: number;
  /** KV cells per context: tokens per sequence x sequences. */
  cellsPerContext: number;
}

/** Tokens of context per sequence the engine gives a model: the configured size, capped by the model's training context. */
export function contextTokens(configured: number, trained: number | null): number {
  return Math.max(64, Math.min(configured, trained || 4096));
}

/**
 * K and V as f16 for every layer, at the key/value width (narrower than the embedding with grouped-query attention);
 * unknown dimensions count as a 7B model's. The file's pages are shared by every worker (mmap), so it counts once.
 */
export function estimateModelBytes(
  meta: Pick<GgufModelSummary, 'file_size' | 'block_count' | 'embedding_length' | 'head_count' | 'head_count_kv'>,
  plan: MemoryPlan,
): number {
  const embd = meta.embedding_length ?? 4096;
  const kvWidth = meta.head_count && meta.head_count_kv ? (embd * meta.head_count_kv) / meta.head_count : embd;
  const perCell = 2 * (meta.block_count ?? 32) * kvWidth * 2;
  return meta.file_size + perCell * plan.cellsPerContext * plan.contextsPerWorker * plan.workers;
}
