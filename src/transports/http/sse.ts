/** Server-sent events with backpressure: while the socket is backed up, events wait and text deltas merge, so a slow reader costs bounded memory. */
import type { Exchange } from './exchange.js';
import type { HttpStats } from './stats.js';

type Item = { kind: 'event'; text: string } | { kind: 'delta'; text: string; render: (text: string) => string };

export class SseStream {
  private blocked = false;
  private queue: Item[] = [];
  private pending = 0;
  private ending: string | undefined;
  private closed = false;
  private started = false;

  constructor(
    private readonly ex: Exchange,
    private readonly stats: HttpStats,
    /** Past this many held-back bytes the reader is too slow: `onOverflow` runs (the caller cancels the work). */
    private readonly maxPending: number,
    private readonly onOverflow: () => void,
  ) {}

  open(extra: readonly [string, string][] = []): void {
    this.ex.writeHead(200, 'text/event-stream; charset=utf-8', [['Cache-Control', 'no-cache'], ['X-Accel-Buffering', 'no'], ...extra]);
    this.ex.res.onWritable(() => {
      this.flush();
      return true;
    });
    this.started = true;
    this.stats.streams_open++;
    this.stats.streams_total++;
  }

  /** One whole SSE event (`data: ...\n\n`), sent in order. */
  event(text: string): void {
    if (this.closed) return;
    if (!this.blocked) return this.write(text);
    this.hold({ kind: 'event', text });
  }

  /**
   * A piece of generated text. While the socket is backed up consecutive deltas merge into one, rendered
   * only when it is sent: held memory is the text itself, not one event envelope per token.
   */
  delta(text: string, render: (text: string) => string): void {
    if (this.closed) return;
    if (!this.blocked) return this.write(render(text));
    const last = this.queue[this.queue.length - 1];
    if (last?.kind === 'delta' && last.render === render) {
      last.text += text;
      this.grow(text.length);
    } else this.hold({ kind: 'delta', text, render });
  }

  /** Ends the stream after whatever is still held back. */
  end(text = ''): void {
    if (this.closed) return;
    if (this.blocked) {
      this.ending = text;
      return;
    }
    this.finish(text);
  }

  private write(text: string): void {
    if (!this.ex.write(text)) {
      this.blocked = true;
      this.stats.stream_backpressure_events++;
    }
  }

  private hold(item: Item): void {
    this.queue.push(item);
    this.grow(item.text.length);
  }

  private grow(bytes: number): void {
    this.pending += bytes;
    this.stats.stream_pending_bytes += bytes;
    if (this.pending > this.stats.stream_pending_bytes_max) this.stats.stream_pending_bytes_max = this.pending;
    if (this.pending > this.maxPending) {
      this.stats.streams_cut_slow_reader++;
      this.onOverflow();
    }
  }

  /** The socket drained: send everything held back as one write. */
  private flush(): void {
    if (this.closed) return;
    this.blocked = false;
    const text = this.queue.map((i) => (i.kind === 'delta' ? i.render(i.text) : i.text)).join('');
    this.release();
    if (this.ending !== undefined) return this.finish(text + this.ending);
    if (text) this.write(text);
  }

  private release(): void {
    this.stats.stream_pending_bytes -= this.pending;
    this.pending = 0;
    this.queue = [];
  }

  private finish(text: string): void {
    this.closed = true;
    this.release();
    if (this.started) this.stats.streams_open--;
    this.ex.end(text);
  }

  /** The client went away: drop what was held. */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
    if (this.started) this.stats.streams_open--;
  }
}
