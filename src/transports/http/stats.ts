/** Counters of each HTTP listener: what `GET /v1/http/stats` reports (in flight, streams, backpressure, disconnects). */

export interface HttpStats {
  name: string;
  url: string;
  requests_total: number;
  requests_in_flight: number;
  responses_by_status: Record<string, number>;
  /** Requests whose client went away before the reply; their work was cancelled. */
  cancelled_by_disconnect: number;
  streams_open: number;
  streams_total: number;
  /** Times a stream's socket could not take more and the server started holding data back. */
  stream_backpressure_events: number;
  /** Bytes held back right now across open streams (deltas are merged while a reader is slow). */
  stream_pending_bytes: number;
  /** The most bytes one stream has held back at any moment. */
  stream_pending_bytes_max: number;
  /** Streams ended because their reader fell further behind than http.stream_max_pending_bytes. */
  streams_cut_slow_reader: number;
  ws_connections_open: number;
  ws_connections_total: number;
  ws_messages_in: number;
  ws_frames_out: number;
  ws_backpressure_events: number;
  ws_buffered_bytes_max: number;
  ws_closed_slow_reader: number;
}

export function newStats(name: string, url: string): HttpStats {
  return {
    name,
    url,
    requests_total: 0,
    requests_in_flight: 0,
    responses_by_status: {},
    cancelled_by_disconnect: 0,
    streams_open: 0,
    streams_total: 0,
    stream_backpressure_events: 0,
    stream_pending_bytes: 0,
    stream_pending_bytes_max: 0,
    streams_cut_slow_reader: 0,
    ws_connections_open: 0,
    ws_connections_total: 0,
    ws_messages_in: 0,
    ws_frames_out: 0,
    ws_backpressure_events: 0,
    ws_buffered_bytes_max: 0,
    ws_closed_slow_reader: 0,
  };
}

/** Every listener of this process by name (the main one is `http`; the WebRTC signalling port has its own). */
export const listenerStats = new Map<string, HttpStats>();
