/** WebSocket profiles on /v1/ws: a request/reply round trip, and a streamed chat (many requests in flight per socket). */
import WebSocket from 'ws';
import { ContractClient, type ContractFrame } from '../clients/contract.js';
import type { Profile, Target } from '../types.js';
import { CHAT_MAX_TOKENS, CHAT_PROMPT, requireModel } from './http.js';

export interface WsClient {
  ws: WebSocket;
  contract: ContractClient;
}

/** Opens one socket and wires it to a contract client (JSON text frames). */
export async function openWs(target: Target): Promise<WsClient> {
  if (!target.wsUrl) throw new Error('the target has no HTTP/WebSocket listener (start it in a mode with http)');
  const ws = new WebSocket(target.wsUrl, { perMessageDeflate: false });
  const contract = new ContractClient((frame) => ws.send(JSON.stringify(frame)));
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    try {
      contract.receive(JSON.parse(data.toString()) as ContractFrame);
    } catch {
      // a frame that is not JSON is the server's bug; the request it belonged to times out and is counted
    }
  });
  ws.on('close', (code, reason) => contract.fail(`the WebSocket closed (${code} ${reason.toString()})`));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket upgrade to ${target.wsUrl} refused: HTTP ${res.statusCode}`)));
    ws.once('error', (err) => reject(new Error(`WebSocket ${target.wsUrl}: ${err.message}`)));
  });
  return { ws, contract };
}

export function wsRouteProfile(name: string, route: string, payload: (target: Target) => unknown, description: string): Profile<WsClient & { payload: unknown }> {
  return {
    name,
    transport: 'ws',
    description,
    needs: { mode: 'http' },
    defaults: { concurrency: 64 },
    async setup(target) {
      const c = await openWs(target);
      const p = payload(target);
      const first = await c.contract.call(route, p);
      if (!first.ok) throw new Error(`${route} over /v1/ws answered ${first.code}: ${first.message ?? ''}`);
      return { ...c, payload: p };
    },
    request: (c) => c.contract.call(route, c.payload),
    async teardown(c) {
      c.ws.close();
    },
  };
}

export const wsRequest = wsRouteProfile('ws-request', 'health', () => null, 'health request/reply over /v1/ws, one socket per client, JSON frames');

export const wsChatStream: Profile<WsClient & { model: string }> = {
  name: 'ws-chat-stream',
  transport: 'ws',
  description: `chat stream:true over /v1/ws, ${CHAT_MAX_TOKENS} tokens, chunk frames`,
  needs: { mode: 'http', model: true },
  defaults: { concurrency: 4, durationS: 10 },
  async setup(target) {
    const model = requireModel(target, 'ws-chat-stream');
    return { ...(await openWs(target)), model };
  },
  request: (c) => c.contract.call('chat', { model: c.model, messages: [{ role: 'user', content: CHAT_PROMPT }], max_tokens: CHAT_MAX_TOKENS, temperature: 0.8, seed: 7, stream: true }),
  async teardown(c) {
    c.ws.close();
  },
};
