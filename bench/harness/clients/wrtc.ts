/** An @roamhq/wrtc peer for benchmarks: the offering side of a data channel, with the minimal types it needs (no DOM lib here). */
import { createRequire } from 'node:module';

export interface DataChannel {
  readyState: string;
  bufferedAmount: number;
  send(data: string | Buffer): void;
  close(): void;
  onopen: (() => void) | null;
  onclose: (() => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: string | ArrayBuffer }) => void) | null;
}

export interface PeerConnection {
  createDataChannel(label: string, opts?: object): DataChannel;
  createOffer(): Promise<{ type: string; sdp: string }>;
  createAnswer(): Promise<{ type: string; sdp: string }>;
  setLocalDescription(d: { type: string; sdp: string }): Promise<void>;
  setRemoteDescription(d: { type: string; sdp: string }): Promise<void>;
  readonly localDescription: { type: string; sdp: string } | null;
  readonly iceGatheringState: string;
  onicegatheringstatechange: (() => void) | null;
  ondatachannel: ((ev: { channel: DataChannel }) => void) | null;
  close(): void;
}

interface Wrtc {
  RTCPeerConnection: new (config?: object) => PeerConnection;
}

const require = createRequire(import.meta.url);
let wrtc: Wrtc | undefined;
export function loadWrtc(): Wrtc {
  wrtc ??= require('@roamhq/wrtc') as Wrtc;
  return wrtc;
}

/** Resolves when ICE gathering is complete, so the local SDP carries every candidate (non-trickle). */
export function gatheringComplete(pc: PeerConnection, timeoutMs = 10_000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`ICE gathering did not complete in ${timeoutMs} ms`)), timeoutMs);
    pc.onicegatheringstatechange = () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        resolve();
      }
    };
  });
}

export function channelOpen(dc: DataChannel, timeoutMs = 20_000): Promise<void> {
  if (dc.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the data channel did not open in ${timeoutMs} ms`)), timeoutMs);
    dc.onopen = () => {
      clearTimeout(t);
      resolve();
    };
    dc.onerror = (ev) => {
      clearTimeout(t);
      reject(new Error(`data channel error: ${String((ev as { error?: unknown })?.error ?? ev)}`));
    };
  });
}

/**
 * Makes an offer with a `tabagent` data channel, hands the SDP to `signal` (which returns the answer),
 * and resolves when the channel is open.
 */
export async function connectPeer(signal: (offerSdp: string) => Promise<string>, label = 'tabagent'): Promise<{ pc: PeerConnection; dc: DataChannel }> {
  const { RTCPeerConnection } = loadWrtc();
  const pc = new RTCPeerConnection({ iceServers: [] });
  try {
    const dc = pc.createDataChannel(label, { ordered: true });
    const opened = channelOpen(dc);
    // Observed now so a failure before the await (signalling) never becomes an unhandled rejection.
    opened.catch(() => {});
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const answer = await signal(pc.localDescription!.sdp);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await opened;
    return { pc, dc };
  } catch (err) {
    pc.close();
    throw err;
  }
}
