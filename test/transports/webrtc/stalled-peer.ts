/** A client in its own process for the backpressure test: connects, asks for an endless stream, prints its session id; the test then stops the process. */
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { wrtc } from './helpers.js';

// Generous: this process compiles its TypeScript and gathers ICE while other test files load the cores.
const c = await TabAgentRtcClient.connect({ baseUrl: process.argv[2]!, RTCPeerConnection: wrtc.RTCPeerConnection, timeoutMs: 120_000 });
let chunks = 0;
// ~6 MB/s: slow enough for this process to keep up on a loaded machine until it is stopped, fast enough to pass
// the server's bound (2 x 4 MiB waiting) within seconds after that.
c.request('test_stream', { count: 1_000_000, size: 32_000, delay_ms: 5, echo: 'stalled' }, {
  onChunk: () => {
    if (++chunks === 3) process.stdout.write(`${c.sessionId}\n`);
  },
}).catch((err: unknown) => {
  process.stderr.write(`stalled peer: the stream ended before the test stopped this process: ${String(err)}\n`);
  process.exit(2);
});
