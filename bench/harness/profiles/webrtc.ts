/** WebRTC profile: an @roamhq/wrtc peer signals through POST /v1/webrtc/offer, then health round trips on the `tabagent` channel. */
import { ContractClient, type ContractFrame } from '../clients/contract.js';
import { connectPeer, type DataChannel, type PeerConnection } from '../clients/wrtc.js';
import type { Profile, Target } from '../types.js';
import { CHAT_MAX_TOKENS, CHAT_PROMPT, requireModel } from './http.js';

export interface PeerClient {
  pc: PeerConnection;
  dc: DataChannel;
  contract: ContractClient;
  close(): Promise<void>;
}

/** Wires a data channel to a contract client (JSON text frames). */
export function contractOver(dc: DataChannel): ContractClient {
  const contract = new ContractClient((frame) => dc.send(JSON.stringify(frame)));
  dc.onmessage = (ev) => {
    if (typeof ev.data !== 'string') return;
    try {
      contract.receive(JSON.parse(ev.data) as ContractFrame);
    } catch {
      // not JSON: its request times out and is counted
    }
  };
  dc.onclose = () => contract.fail('the data channel closed');
  return contract;
}

export async function openServerPeer(target: Target): Promise<PeerClient> {
  const base = target.webrtcUrl || target.url;
  if (!base) throw new Error('the target has no WebRTC signalling listener (start it in mode webrtc or all)');
  let sessionId = '';
  const { pc, dc } = await connectPeer(async (sdp) => {
    const res = await fetch(`${base}/v1/webrtc/offer`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sdp, type: 'offer', peer_id: `bench-${process.pid}` }) });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${base}/v1/webrtc/offer answered ${res.status}: ${text.slice(0, 300)}`);
    const body = JSON.parse(text) as { session_id?: string; sdp?: string; type?: string };
    if (!body.sdp || body.type !== 'answer') throw new Error(`POST /v1/webrtc/offer replied without an answer SDP: ${text.slice(0, 300)}`);
    sessionId = body.session_id ?? '';
    return body.sdp;
  });
  return {
    pc,
    dc,
    contract: contractOver(dc),
    async close() {
      dc.close();
      pc.close();
      if (sessionId) await fetch(`${base}/v1/webrtc/session/${sessionId}`, { method: 'DELETE' }).catch(() => {});
    },
  };
}

export const webrtcRequest: Profile<PeerClient> = {
  name: 'webrtc-request',
  transport: 'webrtc',
  description: 'health request/reply over the tabagent data channel, @roamhq/wrtc peer, one peer per client',
  needs: { mode: 'all' },
  defaults: { concurrency: 8 },
  async setup(target) {
    const c = await openServerPeer(target);
    const first = await c.contract.call('health', null);
    if (!first.ok) throw new Error(`health over the data channel answered ${first.code}: ${first.message ?? ''}`);
    return c;
  },
  request: (c) => c.contract.call('health', null),
  teardown: (c) => c.close(),
};

export const webrtcChatStream: Profile<PeerClient & { model: string }> = {
  name: 'webrtc-chat-stream',
  transport: 'webrtc',
  description: `chat stream:true over the data channel, ${CHAT_MAX_TOKENS} tokens`,
  needs: { mode: 'all', model: true },
  defaults: { concurrency: 4, durationS: 10 },
  async setup(target) {
    const model = requireModel(target, 'webrtc-chat-stream');
    return { ...(await openServerPeer(target)), model };
  },
  request: (c) => c.contract.call('chat', { model: c.model, messages: [{ role: 'user', content: CHAT_PROMPT }], max_tokens: CHAT_MAX_TOKENS, temperature: 0.8, seed: 7, stream: true }),
  teardown: (c) => c.close(),
};
