import t from 'tap';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { allRoutes } from '../../../src/protocol/routes/index.js';
import { writeTestModel } from '../../../src/runtime/gguf/index.js';
import { ConfigStore, loadConfig } from '../../../src/runtime/config.js';
import { createLogger } from '../../../src/runtime/logger.js';
import { startServer } from '../../../src/server.js';
import '../../../src/transports/register.js';
import { wrtc } from './helpers.js';

// A streamed chat from the synthetic model through the real server (webrtc mode), once the model routes exist.
if (!allRoutes.some((r) => r.name === 'chat')) {
  t.skip('the chat route is not in this build yet');
} else {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-webrtc-chat-'));
  mkdirSync(path.join(dataDir, 'models'));
  await writeTestModel(path.join(dataDir, 'models', 'tiny.gguf'), { size: 'tiny' });
  const opts = { flags: { mode: 'webrtc', data_dir: dataDir, webrtc_port: 0, log_level: 'silent', 'inference.workers': 1, 'inference.threads': 1 }, env: {} };
  const store = new ConfigStore(loadConfig(opts), opts);
  const server = await startServer(store, createLogger('silent'));
  t.teardown(() => server.stop());
  const client = await TabAgentRtcClient.connect({ baseUrl: server.context.facts.listeners['webrtc']!, RTCPeerConnection: wrtc.RTCPeerConnection });
  t.teardown(() => client.close());

  t.test('a streamed chat arrives as chunk frames, then the full reply', async (t) => {
    const deltas: string[] = [];
    const reply = await client.request<{ message: { content: string }; finish_reason: string; usage: { completion_tokens: number } }>(
      'chat',
      { model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 16, seed: 1, stream: true },
      { onChunk: (d) => deltas.push((d as { delta: string }).delta) },
    );
    t.ok(deltas.length > 0, 'chunks streamed');
    t.equal(deltas.join(''), reply.message.content, 'chunks add up to the final text');
    t.ok(['stop', 'length'].includes(reply.finish_reason));
  });

  t.test('aborting a generation stops it with its partial text', async (t) => {
    const ac = new AbortController();
    let n = 0;
    const reply = await client.request<{ finish_reason: string }>(
      'chat',
      { model: 'tiny', messages: [{ role: 'user', content: 'go on' }], max_tokens: 1500, stream: true },
      { signal: ac.signal, onChunk: () => ++n === 2 && ac.abort() },
    );
    t.equal(reply.finish_reason, 'cancelled');
  });
}
