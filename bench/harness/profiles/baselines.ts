/** Baselines measured in the same run: raw uWebSockets.js hello-world, raw node-llama-cpp generation, raw @roamhq/wrtc echo. */
import { ContractClient, type ContractFrame } from '../clients/contract.js';
import { connectPeer, type DataChannel, type PeerConnection } from '../clients/wrtc.js';
import { spawnLineChild, type LineChild } from '../baselines/child.js';
import { testModel } from '../target.js';
import type { Outcome, Profile, Target } from '../types.js';
import { CHAT_MAX_TOKENS, CHAT_PROMPT, httpGetProfile } from './http.js';

function childTarget(url = ''): Target {
  return { url, wsUrl: '', webrtcUrl: '', started: true, cliPath: '', env: {} };
}

/** The same keep-alive client and request as http-health, against a bare uWS app in its own process. */
export const baselineUws: Profile = {
  ...(httpGetProfile('baseline-uws', '/v1/health', 'raw uWebSockets.js hello-world (own process), same client as http-health') as Profile),
  transport: 'baseline',
  needs: { server: false },
  async own() {
    const c = await spawnLineChild<{ ready: true; port: number }>('./uws-hello.js');
    const target = childTarget(`http://127.0.0.1:${c.ready.port}`);
    target.pid = c.child.pid!;
    return { target, stop: () => c.stop() };
  },
};

let llamaChild: LineChild | undefined;

/** Raw node-llama-cpp in its own process (its RSS is the baseline's peak RSS): one context, one sequence, 1 thread, the same model, prompt and token count as the chat profiles. */
export const baselineLlama: Profile<LineChild> = {
  name: 'baseline-llama',
  transport: 'baseline',
  description: `raw node-llama-cpp generation in its own process, ${CHAT_MAX_TOKENS} tokens, 1 thread, single stream`,
  needs: { server: false },
  sharedClient: true,
  defaults: { concurrency: 1, durationS: 10 },
  async own(given) {
    const size = (process.env['TABAGENT_BENCH_MODEL_SIZE'] ?? 'medium') as 'tiny' | 'small' | 'medium';
    const type = (process.env['TABAGENT_BENCH_MODEL_TYPE'] ?? 'q8_0') as 'f32' | 'q8_0';
    const file = given.model?.path || (await testModel(size, type));
    const c = await spawnLineChild('./llama-raw.js', [file, '1', String(CHAT_MAX_TOKENS), CHAT_PROMPT], 120_000);
    llamaChild = c;
    const target = childTarget();
    target.pid = c.child.pid!;
    return {
      target,
      stop: async () => {
        llamaChild = undefined;
        await c.stop();
      },
    };
  },
  async setup() {
    if (!llamaChild) throw new Error('baseline-llama: the generation process is not running');
    return llamaChild;
  },
  async request(c): Promise<Outcome> {
    const r = await c.ask<{ tokens: number; ttft_ms: number }>({ go: true });
    // A reply may be empty (end of generation first), as the server's may.
    return r.tokens > 0 ? { ok: true, tokens: r.tokens, ttftMs: r.ttft_ms } : { ok: true };
  },
};

interface EchoPeer {
  pc: PeerConnection;
  dc: DataChannel;
  contract: ContractClient;
}

let echoChild: LineChild | undefined;

/** Raw @roamhq/wrtc: the echo peer answers each frame with itself; frames carry success:true so the contract client settles on the echo. */
export const baselineWrtcEcho: Profile<EchoPeer> = {
  name: 'baseline-wrtc-echo',
  transport: 'baseline',
  description: 'raw @roamhq/wrtc data-channel echo (own process), same frames and client as webrtc-request',
  needs: { server: false },
  defaults: { concurrency: 8 },
  async own() {
    const c = await spawnLineChild('./wrtc-echo.js');
    echoChild = c;
    const target = childTarget();
    target.pid = c.child.pid!;
    return {
      target,
      stop: async () => {
        echoChild = undefined;
        await c.stop();
      },
    };
  },
  async setup() {
    const child = echoChild;
    if (!child) throw new Error('baseline-wrtc-echo: the echo peer is not running');
    const { pc, dc } = await connectPeer(async (sdp) => {
      const r = await child.ask<{ sdp?: string; error?: string }>({ sdp });
      if (!r.sdp) throw new Error(`echo peer: ${r.error}`);
      return r.sdp;
    });
    const contract = new ContractClient((frame) => dc.send(JSON.stringify({ ...frame, success: true })));
    dc.onmessage = (ev) => contract.receive(JSON.parse(ev.data as string) as ContractFrame);
    dc.onclose = () => contract.fail('the echo channel closed');
    return { pc, dc, contract };
  },
  request: (c) => c.contract.call('health', null),
  async teardown(c) {
    c.dc.close();
    c.pc.close();
  },
};
