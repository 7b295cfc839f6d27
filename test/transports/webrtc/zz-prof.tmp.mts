import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { startHarness, wrtc } from './helpers.js';
const h = await startHarness();
const c = await TabAgentRtcClient.connect({ baseUrl: h.baseUrl, RTCPeerConnection: wrtc.RTCPeerConnection });
for (let k = 0; k < 2; k++) {
  let n = 0;
  const t0 = performance.now();
  await c.request('test_stream', { count: 10000, size: 3 }, { onChunk: () => n++ });
  console.log(n, 'chunks', Math.round(n / ((performance.now() - t0) / 1000)), '/s');
}
await c.close(); await h.stop();
