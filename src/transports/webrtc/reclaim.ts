/** Frees closed peer connections' threads and sockets, which @roamhq/wrtc releases only when the RTCPeerConnection object is garbage-collected. */
import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * close() stops a peer connection but its native threads (2) and sockets (4) live until V8 collects
 * the JS object (node-webrtc issue #614), and V8 does not count that native cost, so on a quiet heap
 * it may not collect for a long time: measured here, 1000 connect/close cycles left 4000 threads and
 * 8000 open descriptors. A full collection shortly after sessions close frees them.
 */
let collect: (() => void) | null | undefined;

function collector(): (() => void) | null {
  if (collect !== undefined) return collect;
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return (collect = exposed);
  try {
    // The flag exposes `gc` to contexts created while it is set; it is turned off again at once.
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  } catch {
    collect = null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return collect;
}

/**
 * Runs a full collection `delayMs` after a close (one for all the closes in that time), and one more
 * `trailingMs` after the last, for connections still referenced during the first (their close events
 * were in flight).
 */
export class PeerReclaimer {
  private timer: NodeJS.Timeout | undefined;
  private dueAt = 0;
  private trailingOwed = false;

  constructor(
    private readonly delayMs = 1000,
    private readonly trailingMs = 5000,
  ) {}

  /** A peer connection was closed and dropped: its resources are freed at the next collection. */
  closed(): void {
    this.trailingOwed = true;
    if (this.timer && this.dueAt - Date.now() <= this.delayMs) return;
    this.arm(this.delayMs);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.trailingOwed = false;
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = Date.now() + ms;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      collector()?.();
      if (this.trailingOwed) {
        this.trailingOwed = false;
        this.arm(this.trailingMs);
      }
    }, ms);
    this.timer.unref();
  }
}
