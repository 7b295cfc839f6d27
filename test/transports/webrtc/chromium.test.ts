import t from 'tap';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { servePage, startModelServer } from './helpers.js';

const executablePath = '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  t.plan(0, 'no /usr/bin/chromium here (apt-get install chromium)');
} else {
  const page = await servePage(
    `import { TabAgentRtcClient } from '/src/client/webrtc.js';
     window.runChat = async (opts) => {
       // generous: a loaded CI machine can take many seconds to gather and connect
       const c = await TabAgentRtcClient.connect({ ...opts, timeoutMs: 60_000 });
       const deltas = [];
       const reply = await c.request('chat', { model: 'tiny', messages: [{ role: 'user', content: 'hello from a page' }], max_tokens: 12, seed: 7, stream: true },
         { onChunk: (d) => deltas.push(d.delta) });
       const text = 'page text. '.repeat(24000);
       const big = await c.request('tokenize', { model: 'tiny', text });
       const back = await c.request('detokenize', { model: 'tiny', tokens: big.tokens });
       const sessionId = c.sessionId;
       await c.close();
       return { sessionId, deltas, reply, tokens: big.tokens.length, roundTrip: back.text === text };
     };
     window.clientReady = true;`,
  );
  t.teardown(() => page.close());
  // The page has its own origin: the server's origin rules must allow it (http.cors_origins).
  const server = await startModelServer({ 'http.cors_origins': [page.url] });
  t.teardown(() => server.stop());
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const tab = await browser.newPage();
  await tab.goto(page.url);
  await tab.waitForFunction('window.clientReady === true');

  for (const [flow, trickle] of [['client_offer', false], ['server_offer', true]] as const) {
    t.test(`a Chromium page connects (${flow}, trickle ${trickle}) and streams a chat`, async (t) => {
      const r = (await tab.evaluate((opts) => (globalThis as any).runChat(opts), { flow, trickle, baseUrl: server.baseUrl, peerId: 'chromium' })) as {
        deltas: string[];
        reply: { message: { content: string }; finish_reason: string };
        tokens: number;
        roundTrip: boolean;
      };
      t.ok(r.deltas.length > 0, `${r.deltas.length} chunk frames streamed`);
      t.equal(r.deltas.join(''), r.reply.message.content, 'the chunks add up to the reply');
      t.ok(['stop', 'length'].includes(r.reply.finish_reason));
      t.ok(r.tokens > 100_000, 'a request and a reply over the 256 KiB channel limit went whole');
      t.ok(r.roundTrip, 'the big text came back exactly');
      t.equal(server.transport.sessions.size, 0, 'the page closed its session');
    });
  }
}
