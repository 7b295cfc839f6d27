import t from 'tap';
import { TabAgentRtcClient } from '../../../src/client/webrtc.js';
import { startModelServer, wrtc } from './helpers.js';

// The real server (webrtc mode) with the synthetic model: a Node peer streams a chat, cancels one, and sends a large message.
const server = await startModelServer();
t.teardown(() => server.stop());
const client = await TabAgentRtcClient.connect({ baseUrl: server.baseUrl, RTCPeerConnection: wrtc.RTCPeerConnection, peerId: 'node-peer' });
t.teardown(() => client.close());

type ChatReply = { model: string; message: { role: string; content: string }; finish_reason: string; usage: { completion_tokens: number } };

t.test('a streamed chat arrives as chunk frames, then the full reply', async (t) => {
  const deltas: string[] = [];
  const reply = await client.request<ChatReply>(
    'chat',
    { model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 16, seed: 1, stream: true },
    { onChunk: (d) => deltas.push((d as { delta: string }).delta) },
  );
  t.equal(reply.model, 'tiny');
  t.equal(reply.message.role, 'assistant');
  t.ok(deltas.length > 0, 'chunks streamed');
  t.equal(deltas.join(''), reply.message.content, 'chunks add up to the final text');
  t.ok(['stop', 'length'].includes(reply.finish_reason));
  t.ok(reply.usage.completion_tokens > 0);
});

t.test('aborting a generation stops it with its partial text; the channel serves on', async (t) => {
  // The random-weight model may end a reply by itself before the cancel lands: a few prompts are tried.
  let cancelled: ChatReply | undefined;
  for (let attempt = 0; attempt < 5 && !cancelled; attempt++) {
    const ac = new AbortController();
    const deltas: string[] = [];
    const reply = await client.request<ChatReply>(
      'chat',
      { model: 'tiny', messages: [{ role: 'user', content: `go on ${attempt}` }], max_tokens: 1500, stream: true },
      { signal: ac.signal, onChunk: (d) => deltas.push((d as { delta: string }).delta) === 2 && ac.abort() },
    );
    t.equal(reply.message.content, deltas.join(''), 'the text is every chunk sent');
    if (reply.finish_reason === 'cancelled') cancelled = reply;
  }
  t.ok(cancelled, 'a generation was cancelled');
  t.ok(cancelled!.usage.completion_tokens < 1500, `stopped after ${cancelled!.usage.completion_tokens} tokens`);
  const again = await client.request<ChatReply>('chat', { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  t.ok(['stop', 'length'].includes(again.finish_reason), 'the channel serves on');
});

t.test('a large message goes both ways split and reassembled (tokenize 300 KB of text)', async (t) => {
  const text = 'the quick brown fox. '.repeat(15_000);
  const { tokens } = await client.request<{ tokens: number[] }>('tokenize', { model: 'tiny', text });
  t.ok(tokens.length > 100_000, `${tokens.length} tokens came back in one reply`);
  const { text: back } = await client.request<{ text: string }>('detokenize', { model: 'tiny', tokens });
  t.equal(back, text, 'the round trip is exact');
});

t.test('a model error is an error frame naming what was wrong', async (t) => {
  await t.rejects(client.request('chat', { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }), { code: 'MODEL_NOT_FOUND' });
  await t.rejects(client.request('chat', { model: 'tiny', messages: [{ role: 'robot', content: 'x' }] }), { code: 'VALIDATION_ERROR', message: /role/ });
});
