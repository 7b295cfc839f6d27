/** Baseline child: a raw @roamhq/wrtc answerer that echoes every data-channel message. One offer per stdin line, the answer on stdout. */
import { gatheringComplete, loadWrtc, type PeerConnection } from '../clients/wrtc.js';

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

process.stdout.write(JSON.stringify({ ready: true }) + '\n');
let partial = '';
let chain = Promise.resolve();
process.stdin.setEncoding('utf8');
process.stdin.on('data', (t: string) => {
  partial += t;
  let nl: number;
  while ((nl = partial.indexOf('\n')) >= 0) {
    const line = partial.slice(0, nl);
    partial = partial.slice(nl + 1);
    const { sdp } = JSON.parse(line) as { sdp: string };
    chain = chain.then(async () => {
      try {
        process.stdout.write(JSON.stringify({ sdp: await answer(sdp) }) + '\n');
      } catch (err) {
        process.stdout.write(JSON.stringify({ error: String(err) }) + '\n');
      }
    });
  }
});
const quit = (): void => {
  for (const pc of peers) pc.close();
  process.exit(0);
};
process.stdin.on('end', quit);
process.on('SIGTERM', quit);
