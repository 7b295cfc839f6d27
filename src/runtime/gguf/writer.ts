/** A small GGUF v3 writer: typed metadata, tensor infos, aligned tensor data streamed to disk one tensor at a time. */
import { open } from 'node:fs/promises';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgmlType, GgufValueType, ggmlTensorBytes } from './format.js';

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;

export type GgufValue =
  | { type: GgufScalarType; value: number | bigint | boolean | string }
  | { type: GgufValueType.ARRAY; itemType: GgufScalarType; items: ArrayLike<number | boolean | string> };

export interface GgufTensorSpec {
  name: string;
  /** ggml order: dims[0] is the contiguous (row) dimension. */
  dims: number[];
  type: GgmlType;
  /** Produces the tensor's bytes when it is written, so large models never sit in memory whole. */
  data: () => Uint8Array;
}

export const gguf = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  array: (itemType: GgufScalarType, items: ArrayLike<number | boolean | string>): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType,
    items,
  }),
};

/** Grows as values are appended; little-endian throughout, as GGUF requires. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  scalar(type: GgufScalarType, v: number | bigint | boolean | string): void {
    this.reserve(8);
    const b = this.buf;
    const o = this.length;
    switch (type) {
      case GgufValueType.UINT8: b.writeUInt8(Number(v), o); this.length += 1; return;
      case GgufValueType.INT8: b.writeInt8(Number(v), o); this.length += 1; return;
      case GgufValueType.UINT16: b.writeUInt16LE(Number(v), o); this.length += 2; return;
      case GgufValueType.INT16: b.writeInt16LE(Number(v), o); this.length += 2; return;
      case GgufValueType.UINT32: b.writeUInt32LE(Number(v), o); this.length += 4; return;
      case GgufValueType.INT32: b.writeInt32LE(Number(v), o); this.length += 4; return;
      case GgufValueType.FLOAT32: b.writeFloatLE(Number(v), o); this.length += 4; return;
      case GgufValueType.BOOL: b.writeUInt8(v ? 1 : 0, o); this.length += 1; return;
      case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(v), o); this.length += 8; return;
      case GgufValueType.INT64: b.writeBigInt64LE(BigInt(v), o); this.length += 8; return;
      case GgufValueType.FLOAT64: b.writeDoubleLE(Number(v), o); this.length += 8; return;
      case GgufValueType.STRING: this.string(String(v)); return;
    }
  }
  pad(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Writes a GGUF v3 file: header, metadata, tensor infos, then each tensor's data aligned to `general.alignment` (32). */
export async function writeGguf(
  outPath: string,
  metadata: ReadonlyArray<[string, GgufValue]>,
  tensors: ReadonlyArray<GgufTensorSpec>,
): Promise<void> {
  const alignment = GGUF_DEFAULT_ALIGNMENT;
  const head = new ByteSink();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, value] of metadata) {
    head.string(key);
    head.u32(value.type);
    if (value.type === GgufValueType.ARRAY) {
      head.u32(value.itemType);
      head.u64(value.items.length);
      for (let i = 0; i < value.items.length; i++) head.scalar(value.itemType, value.items[i]);
    } else {
      head.scalar(value.type, value.value);
    }
  }
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    const bytes = ggmlTensorBytes(t.type, elements);
    if (bytes === null) throw new Error(`writeGguf: tensor ${t.name} has unsupported type ${t.type}`);
    sizes.push(bytes);
    head.string(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    offset = alignUp(offset + bytes, alignment);
  }
  head.pad(alignment);

  const fh = await open(outPath, 'w');
  try {
    await fh.write(head.bytes());
    const zeros = Buffer.alloc(alignment);
    for (let i = 0; i < tensors.length; i++) {
      const data = tensors[i].data();
      if (data.byteLength !== sizes[i]) {
        throw new Error(`writeGguf: tensor ${tensors[i].name} produced ${data.byteLength} bytes, expected ${sizes[i]}`);
      }
      await fh.write(data);
      const padding = alignUp(data.byteLength, alignment) - data.byteLength;
      if (padding > 0 && i < tensors.length - 1) await fh.write(zeros, 0, padding);
    }
  } finally {
    await fh.close();
  }
}
