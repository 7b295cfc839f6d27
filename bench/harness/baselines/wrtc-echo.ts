/** Baseline child: a raw @roamhq/wrtc answerer that echoes every data-channel message. One offer per stdin line, the answer on stdout. */
import { gatheringComplete, loadWrtc, type PeerConnection } from '../clients/wrtc.js';
import { serveLines } from './child.js';

const { RTCPeerConnection } = loadWrtc();
const peers: PeerConnection[] = [];

async function answer(sdp: string): Promise<string> {
  const pc = new RTCPeerConnection({ iceServers: [] });
  peers.push(pc);
  pc.ondatachannel = ({ channel }) => {
    channel.onmessage = (ev) => channel.send(ev.data as string);
  };
  await pc.setRemoteDescription({ type: 'offer', sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gatheringComplete(pc);
  return pc.localDescription!.sdp;
}

const quit = (): void => {
  for (const pc of peers) pc.close();
  process.exit(0);
};
serveLines(async (msg) => {
  try {
    return { sdp: await answer((msg as { sdp: string }).sdp) };
  } catch (err) {
    return { error: String(err) };
  }
}, quit);
process.on('SIGTERM', quit);
