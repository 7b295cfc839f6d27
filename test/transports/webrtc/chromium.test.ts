import t from 'tap';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { servePage, startHarness } from './helpers.js';

const executablePath = '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  t.skip('no /usr/bin/chromium here (apt-get install chromium)');
} else {
  const page = await servePage(
    `import { TabAgentRtcClient } from '/src/client/webrtc.js';
     window.runStream = async (opts) => {
       const c = await TabAgentRtcClient.connect(opts);
       const chunks = [];
       const reply = await c.request('test_stream', { count: 25, size: 3 }, { onChunk: (d) => chunks.push(d.delta) });
       const big = await c.request('test_stream', { count: 1, echo: 'b'.repeat(700000) });
       const sessionId = c.sessionId;
       await c.close();
       return { sessionId, chunks: chunks.length, text: chunks.join(''), reply, bigLength: big.echo.length };
     };
     window.clientReady = true;`,
  );
  t.teardown(() => page.close());
  // The page has its own origin: the server's origin rules must allow it (http.cors_origins).
  const h = await startHarness({}, { flags: { 'http.cors_origins': [page.url] } });
  t.teardown(() => h.stop());
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const tab = await browser.newPage();
  await tab.goto(page.url);
  await tab.waitForFunction('window.clientReady === true');

  for (const flow of ['client_offer', 'server_offer']) {
    t.test(`a Chromium page connects (${flow}) and streams`, async (t) => {
      const r = (await tab.evaluate((opts) => (window as any).runStream(opts), { flow, baseUrl: h.baseUrl })) as { chunks: number; text: string; reply: { count: number; finish_reason: string }; bigLength: number; sessionId: string };
      t.equal(r.chunks, 25);
      t.equal(r.text, 'xxx'.repeat(25));
      t.equal(r.reply.finish_reason, 'stop');
      t.equal(r.bigLength, 700000, 'a reply over the 256 KiB channel limit arrives whole');
      t.equal(h.transport.sessions.size, 0, 'the page closed its session');
    });
  }
}

t.test('a page from an origin the server does not allow cannot open a session', { skip: !existsSync(executablePath) }, async (t) => {
  const h = await startHarness();
  t.teardown(() => h.stop());
  const r = await fetch(`${h.baseUrl}/v1/webrtc/offer`, { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{}' });
  t.equal(r.status, 403);
  t.equal(h.transport.sessions.size, 0);
});
