/** Shapes shared by the inference engine (inside worker threads) and the pool and model registry (main thread). */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'function' | 'tool';
  content: string;
  name?: string;
}

export interface SamplingParams {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  seed?: number;
  stop?: string[];
  repeat_penalty?: number;
  /** Constrain the output to JSON matching this schema (node-llama-cpp grammar). */
  json_schema?: Record<string, unknown>;
  /** Constrain the output to any JSON value. */
  json_object?: boolean;
}

export type GenerateInput = { kind: 'chat'; messages: ChatMessage[] } | { kind: 'completion'; prompt: string };

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface GenerateResult {
  text: string;
  finish_reason: FinishReason;
  usage: Usage;
  /** Milliseconds from the start of the task to the first generated token. */
  ttft_ms: number;
}

/** Embeddings in input order, and the tokens they took (for `usage`). */
export interface EmbedResult {
  vectors: number[][];
  tokens: number;
}

export interface ModelInfo {
  id: string;
  path: string;
  architecture: string;
  parameters: number | null;
  context_length: number | null;
  embedding_length: number | null;
  quantization: string | null;
  file_size: number;
  has_chat_template: boolean;
}
