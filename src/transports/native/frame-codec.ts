/** Native-messaging frames: 4-byte native-endian length + UTF-8 JSON; an incremental decoder and a writer that splits replies over 1 MiB. */
import { endianness } from 'node:os';
import { TabAgentError } from '../../protocol/errors.js';

/** What a browser accepts from a host in one message (Chrome and Firefox both cap it at 1 MiB). */
export const MAX_OUTBOUND_FRAME_BYTES = 1024 * 1024;
/** What a browser may send to a host in one message. */
export const MAX_INBOUND_FRAME_BYTES = 64 * 1024 * 1024;

const littleEndian = endianness() === 'LE';

function writeLength(buf: Buffer, value: number, offset: number): void {
  if (littleEndian) buf.writeUInt32LE(value, offset);
  else buf.writeUInt32BE(value, offset);
}

function readLength(buf: Buffer, offset: number): number {
  return littleEndian ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
}

/** One item out of the decoder: a parsed message, or an error that becomes an error frame (the stream stays usable). */
export type DecodedItem = { ok: true; value: unknown } | { ok: false; error: TabAgentError; requestId: string | null };

const REQUEST_ID_IN_TEXT = /"request_id"\s*:\s*"([^"\\]{1,128})"/;

/**
 * Incremental decoder: bytes arrive in arbitrary pieces (a frame split across writes, several frames
 * in one write). Every bad frame yields an error item and decoding carries on with the next frame:
 * a zero length, invalid UTF-8 and invalid JSON cost one frame; a length over the limit is reported
 * as soon as its header arrives and the announced bytes are skipped without being buffered.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Body length of the frame being read, or -1 while waiting for a header. */
  private need = -1;
  /** Bytes still to discard of an over-limit frame. */
  private skip = 0;
  private skipAnnounced = 0;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly maxBytes: number = MAX_INBOUND_FRAME_BYTES) {}

  /** Bytes held for a frame not yet complete. */
  get pending(): number {
    return this.buffered + this.skip;
  }

  push(chunk: Buffer): DecodedItem[] {
    const out: DecodedItem[] = [];
    if (this.skip > 0) {
      const dropped = Math.min(this.skip, chunk.length);
      this.skip -= dropped;
      chunk = chunk.subarray(dropped);
    }
    if (chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 4) break;
        const length = readLength(this.take(4), 0);
        if (length === 0) {
          out.push({ ok: false, error: new TabAgentError('PROTOCOL_ERROR', 'empty frame: the length prefix was 0; a frame holds one JSON message'), requestId: null });
          continue;
        }
        if (length > this.maxBytes) {
          out.push({
            ok: false,
            error: new TabAgentError('PAYLOAD_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.maxBytes} bytes; its bytes are skipped`, { length, limit: this.maxBytes }),
            requestId: null,
          });
          const dropped = Math.min(length, this.buffered);
          if (dropped > 0) this.take(dropped);
          this.skip = length - dropped;
          this.skipAnnounced = length;
          continue;
        }
        this.need = length;
      }
      if (this.buffered < this.need) break;
      const body = this.take(this.need);
      this.need = -1;
      out.push(this.parse(body));
    }
    return out;
  }

  /** The input ended: anything left is a truncated frame, reported as one error item. */
  end(): DecodedItem[] {
    let error: TabAgentError | undefined;
    if (this.skip > 0) {
      error = new TabAgentError('PROTOCOL_ERROR', `the input ended inside an over-limit frame: ${this.skipAnnounced - this.skip} of ${this.skipAnnounced} announced bytes arrived`);
    } else if (this.need >= 0) {
      error = new TabAgentError('PROTOCOL_ERROR', `the input ended inside a frame: ${this.buffered} of ${this.need} announced bytes arrived`, { received: this.buffered, length: this.need });
    } else if (this.buffered > 0) {
      error = new TabAgentError('PROTOCOL_ERROR', `the input ended inside a frame header: ${this.buffered} of 4 length bytes arrived`);
    }
    this.chunks = [];
    this.buffered = 0;
    this.need = -1;
    this.skip = 0;
    return error ? [{ ok: false, error, requestId: null }] : [];
  }

  private parse(body: Buffer): DecodedItem {
    let text: string;
    try {
      text = this.utf8.decode(body);
    } catch {
      return { ok: false, error: new TabAgentError('JSON_ERROR', `frame of ${body.length} bytes is not valid UTF-8`), requestId: null };
    }
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (err) {
      const requestId = REQUEST_ID_IN_TEXT.exec(text)?.[1] ?? null;
      return { ok: false, error: new TabAgentError('JSON_ERROR', `frame of ${body.length} bytes is not valid JSON: ${(err as Error).message}`), requestId };
    }
  }

  /** Removes n bytes from the front of the buffered chunks (copying only when a frame spans chunks). */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const use = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, use);
        filled += use;
        if (use === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(use);
      }
    }
    this.buffered -= n;
    return out;
  }
}

/** One frame: length prefix + the UTF-8 bytes of `json`. */
export function frameText(json: string): Buffer {
  const length = Buffer.byteLength(json);
  const buf = Buffer.allocUnsafe(4 + length);
  writeLength(buf, length, 0);
  buf.write(json, 4, 'utf8');
  return buf;
}

/** The part of a frame too large for one message (docs/protocol.md, "Native messaging"). */
export interface ContinuationFrame {
  request_id: string | null;
  event: 'continuation';
  part: number;
  parts: number;
  data: string;
}

/**
 * Encodes an outbound frame as bytes ready to write. A frame whose JSON exceeds `maxBytes` is sent
 * as continuation frames: its JSON text is cut into strings that each fit in one message, sent in
 * order as `{request_id, event: 'continuation', part, parts, data}`; the receiver joins the `data`
 * strings of parts 0..parts-1 and parses the result as the original frame.
 */
export function encodeFrame(frame: object, maxBytes: number = MAX_OUTBOUND_FRAME_BYTES): Buffer {
  const json = JSON.stringify(frame);
  if (json.length <= maxBytes / 3 || Buffer.byteLength(json) <= maxBytes) return frameText(json);
  const requestId = (frame as { request_id?: unknown }).request_id;
  const id = typeof requestId === 'string' ? requestId : null;
  const pieces = splitJsonText(json, maxBytes - continuationOverhead(id));
  const frames = pieces.map((data, part) => frameText(JSON.stringify({ request_id: id, event: 'continuation', part, parts: pieces.length, data } satisfies ContinuationFrame)));
  return Buffer.concat(frames);
}

/** Bytes of a continuation frame around its `data` string, with room for the largest part numbers. */
function continuationOverhead(id: string | null): number {
  return Buffer.byteLength(JSON.stringify({ request_id: id, event: 'continuation', part: 999_999_999, parts: 999_999_999, data: '' }));
}

/**
 * Cuts a JSON text into strings whose JSON encoding (as a string value) fits in `budget` bytes.
 * The text came from JSON.stringify, so it holds no raw control characters: only `"` and `\` grow
 * (to two bytes) when re-encoded; other characters cost their UTF-8 length. Surrogate pairs stay whole.
 */
export function splitJsonText(text: string, budget: number): string[] {
  const pieces: string[] = [];
  let start = 0;
  let used = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let cost: number;
    let width = 1;
    if (c === 0x22 || c === 0x5c) cost = 2;
    else if (c < 0x80) cost = 1;
    else if (c < 0x800) cost = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      cost = 4;
      width = 2;
    } else cost = 3;
    if (used + cost > budget) {
      pieces.push(text.slice(start, i));
      start = i;
      used = 0;
    }
    used += cost;
    i += width - 1;
  }
  if (start < text.length) pieces.push(text.slice(start));
  return pieces;
}
