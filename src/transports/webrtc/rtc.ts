/** The slice of the WebRTC API the server uses, typed structurally, and its implementation (@roamhq/wrtc). */
import wrtc from '@roamhq/wrtc';

export type ConnectionState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

export interface IceCandidateInit {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

export interface SessionDescriptionInit {
  type: 'offer' | 'answer' | 'pranswer' | 'rollback';
  sdp: string;
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface RtcDataChannel {
  readonly label: string;
  readonly readyState: 'connecting' | 'open' | 'closing' | 'closed';
  readonly bufferedAmount: number;
  /** Absent in @roamhq/wrtc: the channel writer then polls bufferedAmount instead. */
  bufferedAmountLowThreshold?: number;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: string | ArrayBuffer }) => void) | null;
  onbufferedamountlow?: ((ev: unknown) => void) | null;
}

export interface RtcPeerConnection {
  readonly connectionState: ConnectionState;
  readonly signalingState: string;
  readonly iceConnectionState: string;
  readonly iceGatheringState: string;
  readonly localDescription: SessionDescriptionInit | null;
  readonly sctp: { readonly maxMessageSize: number } | null;
  createDataChannel(label: string, init?: { ordered?: boolean }): RtcDataChannel;
  createOffer(): Promise<SessionDescriptionInit>;
  createAnswer(): Promise<SessionDescriptionInit>;
  setLocalDescription(desc: SessionDescriptionInit): Promise<void>;
  setRemoteDescription(desc: SessionDescriptionInit): Promise<void>;
  addIceCandidate(candidate: IceCandidateInit | null): Promise<void>;
  close(): void;
  onconnectionstatechange: ((ev: unknown) => void) | null;
  onicecandidate: ((ev: { candidate: (IceCandidateInit & { toJSON?: () => IceCandidateInit }) | null }) => void) | null;
  ondatachannel: ((ev: { channel: RtcDataChannel }) => void) | null;
}

export type RtcPeerConnectionCtor = new (config?: { iceServers?: IceServer[] }) => RtcPeerConnection;

/** The peer connection class the server uses. */
export const RTCPeerConnection = (wrtc as unknown as { RTCPeerConnection: RtcPeerConnectionCtor }).RTCPeerConnection;
