/** One native-messaging connection (a relayed IPC socket, or the process's own stdin/stdout) bound to a CarrierSession. */
import type { Readable, Writable } from 'node:stream';
import type { OutboundFrame } from '../../protocol/contract.js';
import type { Log } from '../../runtime/logger.js';
import { CarrierSession } from '../carrier-session.js';
import type { Gateway } from '../gateway.js';
import { encodeFrame, FrameDecoder, MAX_OUTBOUND_FRAME_BYTES } from './frame-codec.js';

export interface NativeConnectionOptions {
  maxMessageBytes: number;
  drainTimeoutMs: number;
  maxInFlight?: number;
  /** Called once the input has ended and in-flight requests were drained (or cancelled at the timeout). */
  onEnded(): void;
}

/**
 * Reads frames from `input`, writes frames to `output`. When the input ends (stdin EOF, a relay's
 * half-close), a truncated frame is reported, requests in flight finish (up to the drain timeout),
 * their replies are written, and then `onEnded` runs. Nothing but frames is ever written to `output`.
 */
export class NativeConnection {
  readonly session: CarrierSession;
  private readonly decoder: FrameDecoder;
  private ended = false;
  private closed = false;

  constructor(
    gateway: Gateway,
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly log: Log,
    private readonly opts: NativeConnectionOptions,
  ) {
    this.decoder = new FrameDecoder(opts.maxMessageBytes);
    const sessionOpts = opts.maxInFlight === undefined ? {} : { maxInFlight: opts.maxInFlight };
    this.session = new CarrierSession(gateway, (frame) => this.write(frame), log, sessionOpts);
    input.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('end', () => void this.onEnd());
    input.on('error', (err) => {
      this.log.warn('native input failed', { err });
      this.close();
    });
    output.on('error', (err) => {
      // The reader went away (EPIPE): nobody can receive replies, so cancel what this connection started.
      this.log.warn('native output failed', { err });
      this.close();
    });
  }

  /** Stops reading, lets in-flight requests finish within `timeoutMs`, then cancels the rest. */
  async drain(timeoutMs: number): Promise<void> {
    this.input.pause();
    await this.session.drain(timeoutMs);
    this.close();
  }

  /** Cancels everything in flight; no frame is written afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.session.close();
  }

  private onData(chunk: Buffer): void {
    for (const item of this.decoder.push(chunk)) {
      if (item.ok) this.session.handle(item.value);
      else this.session.reject(item.error, item.requestId);
    }
  }

  private async onEnd(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    for (const item of this.decoder.end()) if (!item.ok) this.session.reject(item.error, item.requestId);
    await this.session.drain(this.opts.drainTimeoutMs);
    this.close();
    this.opts.onEnded();
  }

  private write(frame: OutboundFrame): void {
    if (this.closed) return;
    try {
      this.output.write(encodeFrame(frame, MAX_OUTBOUND_FRAME_BYTES));
    } catch (err) {
      // A reply JSON cannot hold (a BigInt, a cycle): the client still gets an answer for its request.
      this.log.error('could not encode a reply frame', { request_id: frame.request_id, err });
      const error = { code: 'INTERNAL_ERROR' as const, message: `the reply could not be encoded as JSON: ${(err as Error).message}` };
      this.output.write(encodeFrame({ request_id: frame.request_id, success: false, error }));
    }
  }
}
