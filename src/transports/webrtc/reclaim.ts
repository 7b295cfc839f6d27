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

/** Runs one full collection `delayMs` after the first close it is told about, however many closes follow in that time. */
export class PeerReclaimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly delayMs = 1000) {}

  /** A peer connection was closed and dropped: its resources are freed at the next collection. */
  closed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      collector()?.();
    }, this.delayMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
