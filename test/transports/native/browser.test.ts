/** End to end with a real browser: headless Chromium loads a test extension whose service worker talks to com.tabagent.host. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Worker } from 'playwright-core';
import t from 'tap';
import { writeTestModel } from '../../../src/runtime/gguf/index.js';
import { cliPath, processesWith, startServer, tempDir, testEnv, type BackgroundServer } from './helpers.js';

const chromiumPath = '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  t.fail(`${chromiumPath} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does`);
  process.exit(1);
}

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const tmp = tempDir('tabagent-browser-');

/** Chromium derives an unpacked extension's id from its manifest key: sha256 of the key, first 32 hex digits mapped to a-p. */
function extensionIdOf(manifestKey: string): string {
  const hex = createHash('sha256').update(Buffer.from(manifestKey, 'base64')).digest('hex').slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join('');
}

let server: BackgroundServer;
let context: BrowserContext;
let worker: Worker;
const dataDir = path.join(tmp.dir, 'data');
const modelPath = path.join(tmp.dir, 'tiny.gguf');
const extensionDir = path.join(tmp.dir, 'extension');
const profile = path.join(tmp.dir, 'profile');
const manifest = JSON.parse(readFileSync(path.join(root, 'test/fixtures/extension/manifest.json'), 'utf8')) as { key: string };
const extensionId = extensionIdOf(manifest.key);

t.before(async () => {
  await writeTestModel(modelPath, { size: 'tiny' });
  server = await startServer(dataDir, ['--model', modelPath]);
  cpSync(path.join(root, 'test/fixtures/extension'), extensionDir, { recursive: true });
  copyFileSync(path.join(root, 'dist/src/client/native-messaging.js'), path.join(extensionDir, 'native-messaging.js'));
  await run(process.execPath, [cliPath, 'install-native-host', '--browser', 'chromium', '--extension-id', extensionId, '--user-data-dir', profile, '--data-dir', dataDir], { env: testEnv() });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    // Chromium can take long to start on a loaded machine; the suite's own timeout still bounds it.
    timeout: 180_000,
    env: testEnv(),
    args: [
      `--disable-extensions-except=${extensionDir}`,
      `--load-extension=${extensionDir}`,
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  worker = context.serviceWorkers().find((w) => w.url().startsWith(`chrome-extension://${extensionId}/`)) ?? (await context.waitForEvent('serviceworker', { timeout: 60_000 }));
});

t.teardown(async () => {
  await context?.close();
  if (server?.child.exitCode === null) server.child.kill('SIGKILL');
  for (const pid of processesWith('host-main.js', dataDir)) process.kill(pid, 'SIGKILL');
  tmp.remove();
});

t.test('the extension loads with the id its key gives', async (tt) => {
  tt.equal(worker.url(), `chrome-extension://${extensionId}/sw.js`);
});

t.test('chrome.runtime.sendNativeMessage gets one reply', async (tt) => {
  const health = await worker.evaluate(() => (globalThis as any).tabagentTest.sendOnce());
  tt.equal(health.status, 'ok');
});

t.test('chrome.runtime.connectNative carries several requests at once', async (tt) => {
  const { health, system } = await worker.evaluate(() => (globalThis as any).tabagentTest.connectAndAsk());
  tt.equal(health.status, 'ok');
  tt.equal(system.pid, server.child.pid, 'the host relayed to the one long-running server');
});

t.test('a streamed chat from the synthetic model', async (tt) => {
  const model = path.basename(modelPath, '.gguf');
  const result = await worker.evaluate((m) => (globalThis as any).tabagentTest.streamChat(m), model);
  tt.notOk(result.error, 'no error');
  tt.ok(result.deltas.length > 1, `the text came in ${result.deltas.length} chunks`);
  tt.equal(result.final.message.content, result.deltas.join(''), 'the final reply holds the streamed text');
  tt.equal(result.final.finish_reason, 'length');
  tt.equal(result.final.usage.completion_tokens, 12);
});

t.test('no host outlives the browser, and the server ends cleanly', async (tt) => {
  await context.close();
  let left = processesWith('host-main.js', dataDir);
  for (const until = Date.now() + 10_000; left.length && Date.now() < until; left = processesWith('host-main.js', dataDir)) await new Promise((r) => setTimeout(r, 100));
  tt.same(left, [], 'every host the browser started has exited');
  tt.equal(await server.stop(), 0);
});
