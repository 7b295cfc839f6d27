/** install-native-host / uninstall-native-host as a user runs them: files written, idempotent, errors named. */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { cliPath, tempDir } from './helpers.js';

const run = promisify(execFile);
const tmp = tempDir();
t.teardown(() => tmp.remove());
const id = 'abcdefghijklmnopabcdefghijklmnop';

t.test('install writes the manifest and launcher, is idempotent, and uninstall removes them', async (tt) => {
  const profile = path.join(tmp.dir, 'profile');
  const args = ['install-native-host', '--browser', 'chromium', '--extension-id', id, '--user-data-dir', profile, '--data-dir', path.join(tmp.dir, 'data')];
  const first = await run(process.execPath, [cliPath, ...args]);
  tt.match(first.stdout, /wrote +.*NativeMessagingHosts\/com\.tabagent\.host\.json/);
  const manifest = JSON.parse(readFileSync(path.join(profile, 'NativeMessagingHosts/com.tabagent.host.json'), 'utf8'));
  tt.same(manifest.allowed_origins, [`chrome-extension://${id}/`]);
  tt.equal(manifest.type, 'stdio');
  tt.equal(manifest.name, 'com.tabagent.host');
  tt.ok(statSync(manifest.path).mode & 0o100, 'the launcher is executable');
  tt.match(readFileSync(manifest.path, 'utf8'), /host-main\.js' '--data-dir' .* '--allow-extension' 'abcdefghijklmnopabcdefghijklmnop' "\$@"/);
  const second = await run(process.execPath, [cliPath, ...args]);
  tt.match(second.stdout, /unchanged .*com\.tabagent\.host\.json/, 'a second install changes nothing and says so');

  const ff = await run(process.execPath, [cliPath, 'install-native-host', '--browser', 'firefox', '--extension-id', 'tabagent@example.org', '--user-data-dir', path.join(tmp.dir, 'ff')]);
  tt.match(ff.stdout, /allows \["tabagent@example.org"\]/);
  tt.same(JSON.parse(readFileSync(path.join(tmp.dir, 'ff/NativeMessagingHosts/com.tabagent.host.json'), 'utf8')).allowed_extensions, ['tabagent@example.org']);

  const un = await run(process.execPath, [cliPath, 'uninstall-native-host', '--browser', 'chromium', '--user-data-dir', profile]);
  tt.match(un.stdout, /removed +.*com\.tabagent\.host\.json/);
  tt.notOk(existsSync(manifest.path));
  const again = await run(process.execPath, [cliPath, 'uninstall-native-host', '--browser', 'chromium', '--user-data-dir', profile]);
  tt.match(again.stdout, /absent +.*com\.tabagent\.host\.json/, 'uninstalling twice is fine');
});

t.test('bad input names what is wrong', async (tt) => {
  const bad = (args: string[]) => run(process.execPath, [cliPath, 'install-native-host', '--user-data-dir', path.join(tmp.dir, 'x'), ...args]);
  await tt.rejects(bad(['--browser', 'netscape', '--extension-id', id]), { stderr: /--browser 'netscape' is not supported/ });
  await tt.rejects(bad(['--browser', 'chrome', '--extension-id', 'not-an-id']), { stderr: /not a Chromium extension id/ });
  await tt.rejects(bad(['--browser', 'chrome']), { stderr: /at least one --extension-id/ });
});
