/** Splitting and reassembling data-channel messages larger than the negotiated maximum (docs/protocol.md, "## WebRTC"). */
import { TabAgentError } from '../../protocol/errors.js';

/**
 * A fragment is a binary message: a 10-byte header, then a slice of the whole message.
 *   byte 0     0xC1, a byte msgpack never uses (and no JSON text starts with), so a fragment is never
 *              mistaken for a whole msgpack message
 *   byte 1     flags: bit 0 FINAL (last fragment of the message), bit 1 TEXT (the whole message is
 *              UTF-8 JSON; otherwise msgpack)
 *   bytes 2-5  message id, uint32 big-endian, chosen by the sender, unique among its unfinished messages
 *   bytes 6-9  total length of the whole message in bytes, uint32 big-endian, the same in every fragment
 * Fragments of one message are sent in order on the (ordered) channel; fragments of different
 * messages may interleave. Pure Uint8Array code: the browser client uses this module too.
 */
export const FRAGMENT_MAGIC = 0xc1;
export const FRAGMENT_HEADER_BYTES = 10;
const FINAL = 1;
const TEXT = 2;

/** Fallback when the implementation reports no limit (Infinity or 0): what every browser accepts. */
export const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024;
/** Fragments are kept this small even when the peer accepts more, so one huge message does not monopolise the channel. */
export const MAX_FRAGMENT_BYTES = 256 * 1024;

export function isFragment(bytes: Uint8Array): boolean {
  return bytes.length >= FRAGMENT_HEADER_BYTES && bytes[0] === FRAGMENT_MAGIC;
}

/** The largest message sendable whole, from `pc.sctp.maxMessageSize` (which may be Infinity, 0 or missing). */
export function effectiveMaxMessageSize(negotiated: number | undefined | null): number {
  return negotiated !== undefined && negotiated !== null && Number.isFinite(negotiated) && negotiated > 0 ? negotiated : DEFAULT_MAX_MESSAGE_SIZE;
}

/** Splits one whole message into fragments no larger than `maxMessageSize` bytes each. */
export function fragment(message: Uint8Array, text: boolean, messageId: number, maxMessageSize: number): Uint8Array[] {
  const room = Math.min(maxMessageSize, MAX_FRAGMENT_BYTES) - FRAGMENT_HEADER_BYTES;
  if (room <= 0) throw new TabAgentError('INTERNAL_ERROR', `max message size ${maxMessageSize} leaves no room for a fragment`);
  const out: Uint8Array[] = [];
  for (let offset = 0; offset < message.length || out.length === 0; offset += room) {
    const slice = message.subarray(offset, offset + room);
    const last = offset + room >= message.length;
    const frag = new Uint8Array(FRAGMENT_HEADER_BYTES + slice.length);
    const view = new DataView(frag.buffer);
    frag[0] = FRAGMENT_MAGIC;
    frag[1] = (last ? FINAL : 0) | (text ? TEXT : 0);
    view.setUint32(2, messageId >>> 0);
    view.setUint32(6, message.length);
    frag.set(slice, FRAGMENT_HEADER_BYTES);
    out.push(frag);
  }
  return out;
}

export interface Reassembled {
  bytes: Uint8Array;
  text: boolean;
  messageId: number;
}

interface Partial {
  buf: Uint8Array;
  filled: number;
  text: boolean;
  /** Over the size limit: its remaining fragments are read and dropped. */
  discard: boolean;
}

/**
 * Collects fragments into whole messages. Errors name the message id (details.message_id) so a
 * sender with many messages in flight can tell which one failed; the channel itself stays usable.
 */
export class Reassembler {
  private readonly partials = new Map<number, Partial>();

  constructor(
    private readonly maxMessageBytes: number,
    private readonly maxPartials = 16,
  ) {}

  /** Bytes held by unfinished messages. */
  get pendingBytes(): number {
    let n = 0;
    for (const p of this.partials.values()) n += p.discard ? 0 : p.filled;
    return n;
  }

  /** Takes one fragment; returns the whole message when this was its last fragment. */
  push(frag: Uint8Array): Reassembled | null {
    const view = new DataView(frag.buffer, frag.byteOffset, frag.byteLength);
    const flags = frag[1]!;
    const messageId = view.getUint32(2);
    const total = view.getUint32(6);
    const body = frag.subarray(FRAGMENT_HEADER_BYTES);
    const final = (flags & FINAL) !== 0;
    let p = this.partials.get(messageId);
    if (!p) {
      if (this.partials.size >= this.maxPartials) {
        throw new TabAgentError('PROTOCOL_ERROR', `too many fragmented messages at once (at most ${this.maxPartials}); message ${messageId} dropped`, { message_id: messageId });
      }
      const discard = total > this.maxMessageBytes;
      p = { buf: discard ? new Uint8Array(0) : new Uint8Array(total), filled: 0, text: (flags & TEXT) !== 0, discard };
      if (!final) this.partials.set(messageId, p);
      if (discard) {
        throw new TabAgentError('PAYLOAD_TOO_LARGE', `message ${messageId} is ${total} bytes; the limit is ${this.maxMessageBytes} bytes (webrtc.max_message_bytes)`, {
          message_id: messageId,
          message_bytes: total,
          limit_bytes: this.maxMessageBytes,
        });
      }
    }
    if (p.discard) {
      if (final) this.partials.delete(messageId);
      return null;
    }
    if (p.filled + body.length > p.buf.length || total !== p.buf.length) {
      this.partials.delete(messageId);
      throw new TabAgentError('PROTOCOL_ERROR', `fragments of message ${messageId} overflow its declared length of ${p.buf.length} bytes`, { message_id: messageId });
    }
    p.buf.set(body, p.filled);
    p.filled += body.length;
    if (!final) return null;
    this.partials.delete(messageId);
    if (p.filled !== p.buf.length) {
      throw new TabAgentError('PROTOCOL_ERROR', `message ${messageId} ended after ${p.filled} of its ${p.buf.length} bytes`, { message_id: messageId });
    }
    return { bytes: p.buf, text: p.text, messageId };
  }

  clear(): void {
    this.partials.clear();
  }
}
