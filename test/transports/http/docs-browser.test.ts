/** Swagger UI at /docs in a real browser: it renders every operation of /openapi.json and loads nothing from outside the server. */
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import t from 'tap';
import { raw } from './client.js';
import { startStandInServer } from './fixture.js';

const executablePath = '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  t.plan(0, 'no /usr/bin/chromium here (apt-get install chromium)');
} else {
  const server = await startStandInServer();
  t.teardown(() => server.stop());
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());

  t.test('Swagger UI renders every operation from local files', async (t) => {
    const doc = (await raw(server.url, 'GET', '/openapi.json')).json();
    const operations = Object.values<Record<string, unknown>>(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
    const tab = await browser.newPage();
    const elsewhere: string[] = [];
    const problems: string[] = [];
    tab.on('request', (req) => {
      if (!req.url().startsWith(server.url) && !req.url().startsWith('data:')) elsewhere.push(req.url());
    });
    tab.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    tab.on('pageerror', (err) => problems.push(err.message));
    await tab.goto(`${server.url}/docs`);
    await tab.waitForFunction((n) => (globalThis as any).document.querySelectorAll('.opblock').length >= n, operations, { timeout: 60_000 });
    t.equal(await tab.locator('.opblock').count(), operations, `all ${operations} operations are shown`);
    t.match(await tab.locator('.info .title').innerText(), /TabAgent Server/);
    t.ok(await tab.locator('.opblock-summary-path[data-path="/v1/chat/completions"]').count(), 'the OpenAI chat endpoint is listed');
    t.same(elsewhere, [], 'nothing is fetched from outside the server (works offline)');
    t.same(problems, [], 'no script errors and no Content-Security-Policy violations');
    await tab.close();
  });
}
