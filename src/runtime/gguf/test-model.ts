/** Synthetic llama-architecture GGUF models (random weights, real tokenizer and chat template) for tests and benchmarks. */
import { GgmlType, GgufValueType } from './format.js';
import { gguf, writeGguf, type GgufTensorSpec, type GgufValue } from './writer.js';

export type TestModelSize = 'tiny' | 'small' | 'medium';
export type TestModelType = 'f32' | 'q8_0';

export interface TestModelOptions {
  size?: TestModelSize;
  type?: TestModelType;
  /** Same seed, size and type give a byte-identical file. */
  seed?: number;
}

interface Shape {
  embd: number;
  layers: number;
  ff: number;
  heads: number;
}

/** `medium` is the reference model: 25.6M parameters, 98 MiB as F32, 26 MiB as Q8_0. */
export const testModelShapes: Record<TestModelSize, Shape> = {
  tiny: { embd: 64, layers: 2, ff: 128, heads: 2 },
  small: { embd: 256, layers: 4, ff: 704, heads: 4 },
  medium: { embd: 512, layers: 8, ff: 1376, heads: 4 },
};

export const TEST_MODEL_CONTEXT_LENGTH = 2048;

/** The standard ChatML template, so node-llama-cpp resolves its ChatML chat wrapper from the file. */
export const TEST_MODEL_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// llama.cpp token types
const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const BYTE = 6;

/**
 * SPM vocabulary: <unk>, <s>, </s>, the two ChatML markers, 256 byte-fallback tokens and word pieces whose
 * prefixes are all in the vocabulary (SPM builds pieces by merging adjacent symbols), 274 tokens in all.
 */
function testVocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];
  const types = [UNKNOWN, CONTROL, CONTROL, CONTROL, CONTROL];
  const scores = [0, 0, 0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(BYTE);
    scores.push(0);
  }
  const pieces = ['▁', 'e', 't', 'a', 'o', 'n', 's', 'h', '▁t', 'he', '▁th', '▁the', 'in'];
  pieces.forEach((piece, i) => {
    tokens.push(piece);
    types.push(NORMAL);
    // longer pieces score higher so SPM prefers merging into them
    scores.push(-100 + [...piece].length * 10 - i * 0.01);
  });
  return { tokens, scores, types };
}

/** mulberry32: tiny, fast and deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values with the given standard deviation. */
function randomValues(count: number, std: number, seed: number): Float32Array {
  const next = prng(seed);
  const out = new Float32Array(count);
  const amplitude = std * Math.sqrt(3);
  for (let i = 0; i < count; i++) out[i] = (next() * 2 - 1) * amplitude;
  return out;
}

function float32ToHalf(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mantissa = x & 0x7fffff;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const m = (mantissa | 0x800000) >> (1 - exp);
    return sign | ((m + 0x1000) >> 13);
  }
  if (exp >= 31) return sign | 0x7c00;
  const rounded = (exp << 10) | (mantissa >> 13);
  return sign | (rounded + ((mantissa >> 12) & 1));
}

function halfToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (mantissa / 1024);
  if (exp === 31) return mantissa ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + mantissa / 1024);
}

/** ggml Q8_0: blocks of 32 values, each an fp16 scale followed by 32 int8. */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % 32 !== 0) throw new Error('Q8_0 needs a multiple of 32 values');
  const blocks = values.length / 32;
  const out = Buffer.alloc(blocks * 34);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[b * 32 + i]));
    const half = float32ToHalf(amax / 127);
    const d = halfToFloat32(half);
    const inv = d ? 1 / d : 0;
    const o = b * 34;
    out.writeUInt16LE(half, o);
    for (let i = 0; i < 32; i++) {
      out.writeInt8(Math.max(-127, Math.min(127, Math.round(values[b * 32 + i] * inv))), o + 2 + i);
    }
  }
  return out;
}

/** Writes a valid llama GGUF that node-llama-cpp loads and generates from (gibberish, never NaN). */
export async function writeTestModel(outPath: string, options: TestModelOptions = {}): Promise<void> {
  const size = options.size ?? 'tiny';
  const type = options.type ?? 'f32';
  const seed = options.seed ?? 42;
  const shape = testModelShapes[size];
  if (!shape) throw new Error(`unknown test model size "${size}" (tiny, small or medium)`);
  if (type !== 'f32' && type !== 'q8_0') throw new Error(`unknown test model type "${type}" (f32 or q8_0)`);
  const vocab = testVocabulary();
  const nVocab = vocab.tokens.length;
  const { embd, layers, ff, heads } = shape;

  const metadata: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str('llama')],
    ['general.name', gguf.str(`tabagent-test-${size}-${type}`)],
    ['general.file_type', gguf.u32(type === 'f32' ? 0 : 7)],
    ['general.quantization_version', gguf.u32(2)],
    ['llama.context_length', gguf.u32(TEST_MODEL_CONTEXT_LENGTH)],
    ['llama.embedding_length', gguf.u32(embd)],
    ['llama.block_count', gguf.u32(layers)],
    ['llama.feed_forward_length', gguf.u32(ff)],
    ['llama.attention.head_count', gguf.u32(heads)],
    ['llama.attention.head_count_kv', gguf.u32(heads)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(1e-5)],
    ['llama.rope.dimension_count', gguf.u32(embd / heads)],
    ['llama.rope.freq_base', gguf.f32(10000)],
    ['llama.vocab_size', gguf.u32(nVocab)],
    ['tokenizer.ggml.model', gguf.str('llama')],
    ['tokenizer.ggml.tokens', gguf.array(GgufValueType.STRING, vocab.tokens)],
    ['tokenizer.ggml.scores', gguf.array(GgufValueType.FLOAT32, vocab.scores)],
    ['tokenizer.ggml.token_type', gguf.array(GgufValueType.INT32, vocab.types)],
    ['tokenizer.ggml.unknown_token_id', gguf.u32(0)],
    ['tokenizer.ggml.bos_token_id', gguf.u32(1)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(2)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ['tokenizer.chat_template', gguf.str(TEST_MODEL_CHAT_TEMPLATE)],
  ];

  let tensorSeed = seed * 1000;
  const matrix = (name: string, cols: number, rows: number, std: number): GgufTensorSpec => {
    const s = ++tensorSeed;
    return {
      name,
      dims: [cols, rows],
      type: type === 'f32' ? GgmlType.F32 : GgmlType.Q8_0,
      data: () => {
        const values = randomValues(cols * rows, std, s);
        return type === 'f32' ? new Uint8Array(values.buffer) : quantizeQ8_0(values);
      },
    };
  };
  const norm = (name: string): GgufTensorSpec => ({
    name,
    dims: [embd],
    type: GgmlType.F32,
    data: () => new Uint8Array(new Float32Array(embd).fill(1).buffer),
  });

  const tensors: GgufTensorSpec[] = [matrix('token_embd.weight', embd, nVocab, 1)];
  const inStd = 1 / Math.sqrt(embd);
  for (let l = 0; l < layers; l++) {
    tensors.push(
      norm(`blk.${l}.attn_norm.weight`),
      matrix(`blk.${l}.attn_q.weight`, embd, embd, inStd),
      matrix(`blk.${l}.attn_k.weight`, embd, embd, inStd),
      matrix(`blk.${l}.attn_v.weight`, embd, embd, inStd),
      // residual branches are damped so the stream stays well scaled through every layer
      matrix(`blk.${l}.attn_output.weight`, embd, embd, inStd * 0.5),
      norm(`blk.${l}.ffn_norm.weight`),
      matrix(`blk.${l}.ffn_gate.weight`, embd, ff, inStd),
      matrix(`blk.${l}.ffn_up.weight`, embd, ff, inStd),
      matrix(`blk.${l}.ffn_down.weight`, ff, embd, 0.5 / Math.sqrt(ff)),
    );
  }
  // logits with a standard deviation of about 3: peaked enough that sampling settings visibly matter
  tensors.push(norm('output_norm.weight'), matrix('output.weight', embd, nVocab, 3 / Math.sqrt(embd)));
  await writeGguf(outPath, metadata, tensors);
}
