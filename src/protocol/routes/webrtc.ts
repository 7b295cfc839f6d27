/** WebRTC signalling routes: offer/answer, trickle ICE both ways, session state and close (served by transport.webrtc). */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { defineRoute } from '../route.js';

const SessionId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'session_id must match [A-Za-z0-9_-]{1,64}'));
const Sdp = v.pipe(v.string(), v.minLength(1, 'sdp must not be empty'), v.maxLength(256 * 1024, 'sdp is at most 256 KiB'));
const PeerId = v.pipe(v.string(), v.minLength(1, 'peer_id must not be empty'), v.maxLength(128, 'peer_id is at most 128 characters'));

/** A candidate as RTCIceCandidate.toJSON() gives it, or just its `candidate` line. */
export const IceCandidateSchema = v.object({
  candidate: v.pipe(v.string(), v.maxLength(1024, 'candidate is at most 1024 characters')),
  sdpMid: v.optional(v.nullable(v.string())),
  sdpMLineIndex: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0)))),
  usernameFragment: v.optional(v.nullable(v.string())),
});

export const ConnectionStateSchema = v.picklist(['new', 'connecting', 'connected', 'disconnected', 'failed', 'closed']);

export const SessionInfoSchema = v.object({
  session_id: v.string(),
  /** The peer connection's connectionState, as its events report it. */
  state: ConnectionStateSchema,
  flow: v.picklist(['client_offer', 'server_offer']),
  signaling_state: v.string(),
  ice_connection_state: v.string(),
  ice_gathering_state: v.string(),
  peer_id: v.nullable(v.string()),
  remote_address: v.nullable(v.string()),
  channel: v.nullable(v.object({ label: v.string(), state: v.string(), max_message_size: v.number(), buffered_bytes: v.number() })),
  created_at: v.string(),
  last_activity_at: v.string(),
  requests_in_flight: v.number(),
  messages_in: v.number(),
  messages_out: v.number(),
  bytes_in: v.number(),
  bytes_out: v.number(),
  close_reason: v.nullable(v.string()),
});

export const webrtcOffer = defineRoute({
  name: 'webrtc_offer',
  owner: Addresses.webrtcTransport,
  summary:
    "Opens a session. With the client's offer `{sdp, type: 'offer'}` the reply is the server's answer; without `sdp` the server makes the offer (with the `tabagent` data channel) and the client replies on webrtc_answer. Unless `trickle` is true the server waits for its ICE gathering so the returned SDP holds every candidate.",
  input: v.object({
    sdp: v.optional(Sdp),
    type: v.optional(v.literal('offer')),
    /** The client's id: sessions per id are limited (webrtc.max_sessions_per_client). */
    peer_id: v.optional(PeerId),
    /** true: reply at once and trickle the server's candidates (webrtc_candidates); false (default): reply with every candidate in the SDP. */
    trickle: v.optional(v.boolean()),
    /** Set by the HTTP carrier: the client's address, for the per-address limit. */
    _remote_address: v.optional(v.string()),
  }),
  output: v.object({ session_id: v.string(), type: v.picklist(['answer', 'offer']), sdp: v.string(), created_at: v.string(), trickle: v.boolean() }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/webrtc/offer' }],
});

export const webrtcAnswer = defineRoute({
  name: 'webrtc_answer',
  owner: Addresses.webrtcTransport,
  summary: "Completes a server-offer session with the client's answer SDP.",
  input: v.object({ session_id: SessionId, sdp: Sdp, type: v.optional(v.literal('answer')) }),
  output: v.object({ session_id: v.string(), state: ConnectionStateSchema, signaling_state: v.string() }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/webrtc/answer' }],
});

export const webrtcIce = defineRoute({
  name: 'webrtc_ice',
  owner: Addresses.webrtcTransport,
  summary: "Adds one of the client's ICE candidates to a session (trickle ICE); `candidate: null` or an empty candidate line ends the client's candidates.",
  input: v.object({ session_id: SessionId, candidate: v.nullable(v.union([IceCandidateSchema, v.pipe(v.string(), v.maxLength(1024))])) }),
  output: v.object({ session_id: v.string(), accepted: v.boolean() }),
  priority: 'interactive',
  http: [{ method: 'POST', path: '/v1/webrtc/ice' }],
});

export const webrtcCandidates = defineRoute({
  name: 'webrtc_candidates',
  owner: Addresses.webrtcTransport,
  summary: "The server's ICE candidates of a session from index `since` on (trickle ICE); `complete` once its gathering has finished.",
  input: v.object({
    session_id: SessionId,
    since: v.optional(
      v.pipe(
        v.union([v.number(), v.pipe(v.string(), v.regex(/^\d+$/, 'since must be a non-negative integer'), v.transform(Number))]),
        v.integer('since must be a non-negative integer'),
        v.minValue(0, 'since must be a non-negative integer'),
      ),
    ),
  }),
  output: v.object({ session_id: v.string(), candidates: v.array(IceCandidateSchema), next: v.number(), complete: v.boolean() }),
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/webrtc/session/{session_id}/candidates' }],
});

export const webrtcSession = defineRoute({
  name: 'webrtc_session',
  owner: Addresses.webrtcTransport,
  summary: 'The real state of a session (connection, signalling, ICE, channel, traffic); a closed session is reported for a while after it closed.',
  input: v.object({ session_id: SessionId }),
  output: SessionInfoSchema,
  priority: 'interactive',
  http: [{ method: 'GET', path: '/v1/webrtc/session/{session_id}' }],
});

export const webrtcClose = defineRoute({
  name: 'webrtc_close',
  owner: Addresses.webrtcTransport,
  summary: 'Closes a session: its requests are cancelled, its data channel and peer connection closed.',
  input: v.object({ session_id: SessionId }),
  output: v.object({ session_id: v.string(), state: v.literal('closed'), closed: v.boolean() }),
  priority: 'interactive',
  http: [{ method: 'DELETE', path: '/v1/webrtc/session/{session_id}' }],
});

export const webrtcRoutes = [webrtcOffer, webrtcAnswer, webrtcIce, webrtcCandidates, webrtcSession, webrtcClose];
