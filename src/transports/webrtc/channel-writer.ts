/** Writes whole messages to a data channel: splits those over the negotiated maximum, and holds back while the channel's buffer is full. */
import { TabAgentError } from '../../protocol/errors.js';
import { fragment } from './framing.js';

/** What the writer needs of an RTCDataChannel (the browser's or @roamhq/wrtc's). */
export interface WritableChannel {
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold?: number;
  onbufferedamountlow?: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
}

export interface ChannelWriterOptions {
  /** The largest message the peer accepts whole (pc.sctp.maxMessageSize, read when a message is written). */
  maxMessageSize: () => number;
  /** Stop handing messages to the channel while its buffer holds this much. */
  highWaterBytes?: number;
  /** Resume when the buffer drains below this (bufferedAmountLowThreshold). */
  lowWaterBytes?: number;
  /** Bytes the writer may hold back in total; past it `onOverflow` runs (the peer is not reading). */
  maxQueuedBytes: number;
  onOverflow: (queuedBytes: number) => void;
}

const encoder = new TextEncoder();
/** Interval at which the buffer is re-checked where the implementation has no bufferedamountlow event. */
const POLL_MS = 2;

export class ChannelWriter {
  private readonly queue: { data: string | Uint8Array; size: number }[] = [];
  private queuedBytes = 0;
  private nextMessageId = 1;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /**
   * bufferedAmount as last read plus what was sent since: an upper bound of the real value. Reading
   * bufferedAmount (or readyState, or sctp) in @roamhq/wrtc is a blocking hop to libwebrtc's network
   * thread (~40 us), so the real value is read only when this bound reaches the high-water mark.
   */
  private bufferedBound = 0;
  private maxSize: number | undefined;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly hasLowEvent: boolean;

  constructor(
    private readonly channel: WritableChannel,
    private readonly opts: ChannelWriterOptions,
  ) {
    this.highWater = opts.highWaterBytes ?? 1024 * 1024;
    this.lowWater = opts.lowWaterBytes ?? 256 * 1024;
    // @roamhq/wrtc has neither the threshold nor the event; browsers have both.
    this.hasLowEvent = typeof channel.bufferedAmountLowThreshold === 'number';
    if (this.hasLowEvent) {
      channel.bufferedAmountLowThreshold = this.lowWater;
      channel.onbufferedamountlow = () => this.flush();
    }
  }

  /** Bytes waiting in the writer (not yet handed to the channel). */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /**
   * Queues one whole message (a string is sent as text, bytes as binary) and returns the fragment
   * message id when it had to be split, so an error naming that id can be matched to it.
   */
  write(message: string | Uint8Array): number | undefined {
    if (this.closed) throw new TabAgentError('UNAVAILABLE', 'the data channel is closed');
    // Negotiated once per connection; reading it costs a thread hop in @roamhq/wrtc.
    const max = (this.maxSize ??= this.opts.maxMessageSize());
    let messageId: number | undefined;
    // A UTF-16 code unit is at most 3 UTF-8 bytes: short strings need no encoding to know they fit.
    if (typeof message === 'string' && message.length * 3 <= max) this.push(message, message.length);
    else {
      const bytes = typeof message === 'string' ? encoder.encode(message) : message;
      if (bytes.length <= max) this.push(message, bytes.length);
      else {
        messageId = this.nextMessageId;
        this.nextMessageId = (this.nextMessageId % 0xffffffff) + 1;
        for (const frag of fragment(bytes, typeof message === 'string', messageId, max)) this.push(frag, frag.length);
      }
    }
    this.flush();
    if (this.queuedBytes > this.opts.maxQueuedBytes) this.opts.onOverflow(this.queuedBytes);
    return messageId;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
    if (this.hasLowEvent) this.channel.onbufferedamountlow = null;
  }

  private push(data: string | Uint8Array, size: number): void {
    this.queue.push({ data, size });
    this.queuedBytes += size;
  }

  private flush(): void {
    if (this.closed) return;
    while (this.queue.length > 0) {
      if (this.bufferedBound >= this.highWater) {
        this.bufferedBound = this.channel.bufferedAmount;
        if (this.bufferedBound >= this.highWater) break;
      }
      const { data, size } = this.queue.shift()!;
      this.queuedBytes -= size;
      this.bufferedBound += size;
      try {
        this.channel.send(data);
      } catch {
        // Not open (any more): its close handler tears the session down.
        this.close();
        return;
      }
    }
    if (this.queue.length > 0 && !this.hasLowEvent && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, POLL_MS);
    }
  }
}
