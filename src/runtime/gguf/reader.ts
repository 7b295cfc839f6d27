/** Reads a GGUF file's header, metadata and tensor infos (never the weights) and checks the file is whole. */
import { open, stat } from 'node:fs/promises';
import { TabAgentError } from '../../protocol/errors.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType, ggmlTensorBytes, ggmlTypeNames, llamaFileTypeNames } from './format.js';

/** Arrays longer than this are summarised (a real vocabulary has 150k strings; nobody needs them for model_info). */
const MAX_KEPT_ARRAY = 64;

export interface GgufArraySummary {
  arrayOf: string;
  length: number;
}

export type GgufMetadataValue = number | bigint | boolean | string | Array<number | bigint | boolean | string> | GgufArraySummary;

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Record<string, GgufMetadataValue>;
  tensors: GgufTensorInfo[];
  /** Byte offset of the first tensor's data. */
  dataOffset: number;
  fileSize: number;
}

/** What model_info shows about a GGUF model. */
export interface GgufModelSummary {
  architecture: string;
  name: string | null;
  parameters: number;
  context_length: number | null;
  embedding_length: number | null;
  block_count: number | null;
  /** Attention heads, and the key/value heads (fewer with grouped-query attention): they size the KV cache. */
  head_count: number | null;
  head_count_kv: number | null;
  vocab_size: number | null;
  /** From general.file_type, else the dominant tensor type. */
  quantization: string | null;
  file_type: number | null;
  has_chat_template: boolean;
  file_size: number;
}

class NeedMore extends Error {}

/** A cursor over a buffer holding the file's beginning; running off its end asks the caller for more. */
class Cursor {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly atEof: boolean,
    private readonly file: string,
  ) {}
  private need(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.atEof) throw corrupt(this.file, `the file ends inside its header (at byte ${this.buf.length})`);
    throw new NeedMore();
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(this.file, `implausible length ${v} at byte ${this.pos - 8}`);
    return Number(v);
  }
  string(): string {
    const n = this.u64();
    if (n > 1 << 28) throw corrupt(this.file, `implausible string length ${n} at byte ${this.pos - 8}`);
    this.need(n);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  scalar(type: number): number | bigint | boolean | string {
    const b = this.buf;
    const at = this.pos;
    const take = (n: number) => {
      this.need(n);
      this.pos += n;
    };
    switch (type) {
      case GgufValueType.UINT8: take(1); return b.readUInt8(at);
      case GgufValueType.INT8: take(1); return b.readInt8(at);
      case GgufValueType.UINT16: take(2); return b.readUInt16LE(at);
      case GgufValueType.INT16: take(2); return b.readInt16LE(at);
      case GgufValueType.UINT32: take(4); return b.readUInt32LE(at);
      case GgufValueType.INT32: take(4); return b.readInt32LE(at);
      case GgufValueType.FLOAT32: take(4); return b.readFloatLE(at);
      case GgufValueType.BOOL: take(1); return b.readUInt8(at) !== 0;
      case GgufValueType.UINT64: take(8); return b.readBigUInt64LE(at);
      case GgufValueType.INT64: take(8); return b.readBigInt64LE(at);
      case GgufValueType.FLOAT64: take(8); return b.readDoubleLE(at);
      case GgufValueType.STRING: return this.string();
      default: throw corrupt(this.file, `unknown metadata value type ${type} at byte ${at - 4}`);
    }
  }
}

function corrupt(file: string, why: string): TabAgentError {
  return new TabAgentError('BAD_REQUEST', `${file} is not a valid GGUF model: ${why}`, { path: file });
}

function parse(buf: Buffer, atEof: boolean, file: string, fileSize: number): GgufFile {
  const c = new Cursor(buf, atEof, file);
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    throw corrupt(file, `bad magic 0x${magic.toString(16).padStart(8, '0')} (expected "GGUF")`);
  }
  const version = c.u32();
  if (version < 2 || version > 3) throw corrupt(file, `unsupported GGUF version ${version} (2 or 3 expected)`);
  const tensorCount = c.u64();
  const kvCount = c.u64();
  if (kvCount > 1_000_000 || tensorCount > 10_000_000) {
    throw corrupt(file, `implausible counts (${tensorCount} tensors, ${kvCount} metadata keys)`);
  }
  const metadata: Record<string, GgufMetadataValue> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = c.string();
    const type = c.u32();
    if (type === GgufValueType.ARRAY) {
      const itemType = c.u32();
      const length = c.u64();
      const items: Array<number | bigint | boolean | string> = [];
      for (let j = 0; j < length; j++) {
        const v = c.scalar(itemType);
        if (length <= MAX_KEPT_ARRAY) items.push(v);
      }
      metadata[key] = length <= MAX_KEPT_ARRAY ? items : { arrayOf: GgufValueType[itemType] ?? String(itemType), length };
    } else {
      metadata[key] = c.scalar(type);
    }
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string();
    const nDims = c.u32();
    if (nDims > 8) throw corrupt(file, `tensor ${name} has ${nDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64());
    const type = c.u32();
    const offset = c.u64();
    tensors.push({ name, dims, type, offset });
  }
  const alignment = Number(metadata['general.alignment'] ?? GGUF_DEFAULT_ALIGNMENT) || GGUF_DEFAULT_ALIGNMENT;
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  return { version, metadata, tensors, dataOffset, fileSize };
}

/**
 * Parses a GGUF file's header (reading more of the file only as the metadata needs it) and checks that every
 * tensor's data lies inside the file. Throws TabAgentError BAD_REQUEST naming the file and the defect.
 */
export async function readGguf(path: string): Promise<GgufFile> {
  let fileSize: number;
  try {
    fileSize = (await stat(path)).size;
  } catch (err) {
    throw new TabAgentError('NOT_FOUND', `cannot read model file ${path}: ${(err as Error).message}`, { path });
  }
  const fh = await open(path, 'r');
  try {
    let want = Math.min(fileSize, 1 << 20);
    for (;;) {
      const buf = Buffer.alloc(want);
      const { bytesRead } = await fh.read(buf, 0, want, 0);
      try {
        const file = parse(buf.subarray(0, bytesRead), bytesRead >= fileSize, path, fileSize);
        for (const t of file.tensors) {
          const bytes = ggmlTensorBytes(t.type, t.dims.reduce((a, b) => a * b, 1));
          const end = file.dataOffset + t.offset + (bytes ?? 0);
          if (end > fileSize) {
            throw corrupt(
              path,
              `truncated: tensor ${t.name} needs bytes up to ${end} but the file has ${fileSize} bytes`,
            );
          }
        }
        return file;
      } catch (err) {
        if (!(err instanceof NeedMore)) throw err;
        want = Math.min(fileSize, want * 4);
      }
    }
  } finally {
    await fh.close();
  }
}

function num(v: GgufMetadataValue | undefined): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return null;
}

/** The facts model_info reports, from the file alone (no model load). */
export function summariseGguf(file: GgufFile): GgufModelSummary {
  const m = file.metadata;
  const arch = typeof m['general.architecture'] === 'string' ? (m['general.architecture'] as string) : 'unknown';
  let parameters = 0;
  const bytesByType = new Map<number, number>();
  for (const t of file.tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    parameters += n;
    if (t.dims.length >= 2) bytesByType.set(t.type, (bytesByType.get(t.type) ?? 0) + n);
  }
  const fileType = num(m['general.file_type']);
  let quantization = fileType === null ? null : (llamaFileTypeNames[fileType] ?? null);
  if (quantization === null && bytesByType.size > 0) {
    const dominant = [...bytesByType.entries()].sort((a, b) => b[1] - a[1])[0][0];
    quantization = ggmlTypeNames[dominant] ?? `type_${dominant}`;
  }
  const tokens = m['tokenizer.ggml.tokens'];
  const vocab =
    num(m[`${arch}.vocab_size`]) ??
    (Array.isArray(tokens) ? tokens.length : tokens && typeof tokens === 'object' ? tokens.length : null);
  return {
    architecture: arch,
    name: typeof m['general.name'] === 'string' ? (m['general.name'] as string) : null,
    parameters,
    context_length: num(m[`${arch}.context_length`]),
    embedding_length: num(m[`${arch}.embedding_length`]),
    block_count: num(m[`${arch}.block_count`]),
    head_count: num(m[`${arch}.attention.head_count`]),
    head_count_kv: num(m[`${arch}.attention.head_count_kv`]) ?? num(m[`${arch}.attention.head_count`]),
    vocab_size: vocab,
    quantization,
    file_type: fileType,
    has_chat_template: typeof m['tokenizer.chat_template'] === 'string' && (m['tokenizer.chat_template'] as string).length > 0,
    file_size: file.fileSize,
  };
}

/** readGguf + summariseGguf: what the model registry calls for model_info. */
export async function readGgufMetadata(path: string): Promise<GgufModelSummary> {
  return summariseGguf(await readGguf(path));
}
