/** The `tabagent` data channel of one session: decodes JSON text / msgpack binary / fragments into contract requests and writes replies back in kind. */
import { Packr } from 'msgpackr';
import { salvageRequestId, type OutboundFrame } from '../../protocol/contract.js';
import { TabAgentError, toTabAgentError } from '../../protocol/errors.js';
import type { Log } from '../../runtime/logger.js';
import { CarrierSession } from '../carrier-session.js';
import type { Gateway } from '../gateway.js';
import { ChannelWriter } from './channel-writer.js';
import { isFragment, Reassembler } from './framing.js';
import type { RtcDataChannel } from './rtc.js';

export const CHANNEL_LABEL = 'tabagent';

type Encoding = 'json' | 'msgpack';

/** Plain msgpack maps (no msgpackr records), so any msgpack library in a page can read the frames. */
const packr = new Packr({ useRecords: false, moreTypes: false });
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface ChannelStats {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface ChannelLinkOptions {
  gateway: Gateway;
  log: Log;
  /** Largest whole message accepted (after reassembly): webrtc.max_message_bytes. */
  maxMessageBytes: number;
  /** The peer's limit for one message (negotiated sctp max-message-size). */
  maxMessageSize: () => number;
  onActivity: () => void;
  /** The channel closed or can no longer be used; the session tears down. */
  onGone: (reason: string) => void;
}

export class ChannelLink {
  readonly stats: ChannelStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 };
  private readonly session: CarrierSession;
  private readonly writer: ChannelWriter;
  private readonly reassembler: Reassembler;
  /** The encoding each in-flight request arrived in: its chunks and reply go back the same way. */
  private readonly encodings = new Map<string, Encoding>();
  /** Encoding of the message being handled, for errors about a message with no usable request id. */
  private current: Encoding = 'json';
  private closed = false;

  constructor(
    readonly channel: RtcDataChannel,
    private readonly opts: ChannelLinkOptions,
  ) {
    channel.binaryType = 'arraybuffer';
    this.reassembler = new Reassembler(opts.maxMessageBytes);
    this.writer = new ChannelWriter(channel, {
      maxMessageSize: opts.maxMessageSize,
      maxQueuedBytes: 2 * opts.maxMessageBytes,
      onOverflow: (queued) => opts.onGone(`the peer is not reading: ${queued} bytes waiting to be sent`),
    });
    this.session = new CarrierSession(opts.gateway, (frame) => this.send(frame), opts.log);
    channel.onmessage = (ev) => this.receive(ev.data);
    channel.onclose = () => opts.onGone('the data channel closed');
    channel.onerror = () => opts.onGone('the data channel failed');
  }

  get inFlight(): number {
    return this.session.inFlight;
  }

  get bufferedBytes(): number {
    return this.writer.pendingBytes + (this.channel.readyState === 'open' ? this.channel.bufferedAmount : 0);
  }

  drain(timeoutMs: number): Promise<void> {
    return this.session.drain(timeoutMs);
  }

  /** Cancels what runs on the channel and closes it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.session.close();
    this.writer.close();
    this.reassembler.clear();
    this.encodings.clear();
    this.channel.onmessage = null;
    this.channel.onclose = null;
    this.channel.onerror = null;
    try {
      this.channel.close();
    } catch {
      // Already closed by the peer.
    }
  }

  private receive(data: string | ArrayBuffer): void {
    if (this.closed) return;
    this.opts.onActivity();
    this.stats.messagesIn++;
    if (typeof data === 'string') {
      this.stats.bytesIn += data.length;
      this.current = 'json';
      this.decodeJson(data);
      return;
    }
    const bytes = new Uint8Array(data);
    this.stats.bytesIn += bytes.length;
    if (!isFragment(bytes)) {
      this.current = 'msgpack';
      this.decodeMsgpack(bytes);
      return;
    }
    let whole;
    try {
      whole = this.reassembler.push(bytes);
    } catch (err) {
      this.current = (bytes[1]! & 2) !== 0 ? 'json' : 'msgpack';
      this.session.reject(toTabAgentError(err));
      return;
    }
    if (!whole) return;
    this.current = whole.text ? 'json' : 'msgpack';
    if (!whole.text) {
      this.decodeMsgpack(whole.bytes);
      return;
    }
    let text: string;
    try {
      text = decoder.decode(whole.bytes);
    } catch {
      this.session.reject(new TabAgentError('PROTOCOL_ERROR', `message ${whole.messageId} is not valid UTF-8 text`));
      return;
    }
    this.decodeJson(text);
  }

  private decodeJson(text: string): void {
    if (text.length > this.opts.maxMessageBytes) {
      this.session.reject(new TabAgentError('PAYLOAD_TOO_LARGE', `message of ${text.length} characters is over the ${this.opts.maxMessageBytes}-byte limit (webrtc.max_message_bytes)`));
      return;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      this.session.reject(new TabAgentError('JSON_ERROR', `a text message must be one JSON request: ${(err as Error).message}`));
      return;
    }
    this.dispatch(obj, 'json');
  }

  private decodeMsgpack(bytes: Uint8Array): void {
    let obj: unknown;
    try {
      obj = packr.unpack(bytes);
    } catch (err) {
      this.session.reject(new TabAgentError('PROTOCOL_ERROR', `a binary message must be one msgpack request: ${(err as Error).message}`));
      return;
    }
    this.dispatch(obj, 'msgpack');
  }

  private dispatch(obj: unknown, encoding: Encoding): void {
    const id = salvageRequestId(obj);
    // A duplicate id keeps its first request's encoding; CarrierSession answers it with CONFLICT.
    if (id !== null && !this.encodings.has(id)) this.encodings.set(id, encoding);
    this.current = encoding;
    this.session.handle(obj);
  }

  private send(frame: OutboundFrame): void {
    if (this.closed) return;
    const id = frame.request_id;
    const encoding = (id !== null && this.encodings.get(id)) || this.current;
    if (id !== null && 'success' in frame) this.encodings.delete(id);
    this.opts.onActivity();
    let message: string | Uint8Array;
    try {
      message = encoding === 'json' ? JSON.stringify(frame) : packr.pack(frame);
    } catch (err) {
      this.opts.log.error('reply could not be encoded', { request_id: id, err });
      message = JSON.stringify({ request_id: id, success: false, error: new TabAgentError('INTERNAL_ERROR', `the reply could not be encoded: ${(err as Error).message}`).toBody() });
    }
    this.stats.messagesOut++;
    this.stats.bytesOut += message.length;
    try {
      this.writer.write(message);
    } catch {
      // Closed between the reply and its write: nobody is left to read it.
    }
  }
}
