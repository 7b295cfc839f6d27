/** install-native-host / uninstall-native-host as a user runs them: files written, idempotent, errors named. */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Browsers, installNativeHost, uninstallNativeHost } from '../../../src/transports/native/install.js';
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
  // What the command printed when it failed ('' if it succeeded, which the patterns then do not match).
  const stderrOf = (p: Promise<unknown>) => p.then(() => '', (err: { stderr: string }) => err.stderr);
  tt.match(await stderrOf(bad(['--browser', 'netscape', '--extension-id', id])), /--browser 'netscape' is not supported/);
  tt.match(await stderrOf(bad(['--browser', 'chrome', '--extension-id', 'not-an-id'])), /not a Chromium extension id/);
  tt.match(await stderrOf(bad(['--browser', 'chrome'])), /at least one --extension-id/);
});

t.test('every browser gets its per-user location on Linux and macOS, and the registry command on Windows', async (tt) => {
  const home = path.join(tmp.dir, 'home');
  const expected: Record<string, { linux: string; darwin: string; key: string }> = {
    chrome: { linux: '.config/google-chrome/NativeMessagingHosts', darwin: 'Library/Application Support/Google/Chrome/NativeMessagingHosts', key: 'HKCU\\Software\\Google\\Chrome\\NativeMessagingHosts' },
    chromium: { linux: '.config/chromium/NativeMessagingHosts', darwin: 'Library/Application Support/Chromium/NativeMessagingHosts', key: 'HKCU\\Software\\Chromium\\NativeMessagingHosts' },
    edge: { linux: '.config/microsoft-edge/NativeMessagingHosts', darwin: 'Library/Application Support/Microsoft Edge/NativeMessagingHosts', key: 'HKCU\\Software\\Microsoft\\Edge\\NativeMessagingHosts' },
    brave: { linux: '.config/BraveSoftware/Brave-Browser/NativeMessagingHosts', darwin: 'Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts', key: 'HKCU\\Software\\BraveSoftware\\Brave-Browser\\NativeMessagingHosts' },
    firefox: { linux: '.mozilla/native-messaging-hosts', darwin: 'Library/Application Support/Mozilla/NativeMessagingHosts', key: 'HKCU\\Software\\Mozilla\\NativeMessagingHosts' },
  };
  for (const browser of Browsers) {
    const ids = browser === 'firefox' ? ['tabagent@example.org', 'other@example.org'] : [id, 'bcdefghijklmnopabcdefghijklmnopa'];
    for (const platform of ['linux', 'darwin'] as const) {
      const opts = { browser, extensionIds: ids, dataDir: path.join(tmp.dir, 'data'), platform, home };
      const dir = path.join(home, expected[browser]![platform]);
      const first = installNativeHost(opts);
      tt.same(first.files.map((f) => [f.path, f.action]), [[path.join(dir, 'tabagent-native-host'), 'written'], [path.join(dir, 'com.tabagent.host.json'), 'written']], `${browser} on ${platform}: written to ${dir}`);
      const manifest = JSON.parse(readFileSync(path.join(dir, 'com.tabagent.host.json'), 'utf8'));
      if (browser === 'firefox') tt.same(manifest.allowed_extensions, ids);
      else tt.same(manifest.allowed_origins, ids.map((i) => `chrome-extension://${i}/`));
      tt.equal(manifest.path, path.join(dir, 'tabagent-native-host'));
      tt.same(installNativeHost(opts).files.map((f) => f.action), ['unchanged', 'unchanged'], `${browser} on ${platform}: installing again changes nothing`);
      tt.same(uninstallNativeHost(opts).files.map((f) => f.action), ['removed', 'removed']);
      tt.same(uninstallNativeHost(opts).files.map((f) => f.action), ['absent', 'absent'], `${browser} on ${platform}: uninstalling again is fine`);
    }
    const win = installNativeHost({ browser, extensionIds: ids, dataDir: path.join(tmp.dir, 'data'), platform: 'win32', home, env: { APPDATA: path.join(home, 'AppData') } });
    const manifestFile = path.join(home, 'AppData', 'TabAgent', 'native-host', browser, 'com.tabagent.host.json');
    tt.equal(win.registryCommand, `reg add "${expected[browser]!.key}\\com.tabagent.host" /ve /t REG_SZ /d "${manifestFile}" /f`, `${browser} on Windows: the registry command`);
    tt.match(readFileSync(path.join(path.dirname(manifestFile), 'tabagent-native-host.cmd'), 'utf8'), `host-main.js" "--data-dir" "${path.join(tmp.dir, 'data')}" "--allow-extension" "${ids[0]}"`, `${browser} on Windows: the launcher`);
    tt.match(uninstallNativeHost({ browser, platform: 'win32', home, env: { APPDATA: path.join(home, 'AppData') } }).registryCommand, /^reg delete /);
  }
});

t.test('without --user-data-dir the CLI writes to the browser folder in the home directory', async (tt) => {
  const home = path.join(tmp.dir, 'cli-home');
  const env = { ...process.env, HOME: home, XDG_DATA_HOME: path.join(home, '.local/share') };
  const out = await run(process.execPath, [cliPath, 'install-native-host', '--browser', 'firefox', '--extension-id', 'tabagent@example.org'], { env });
  const manifestFile = path.join(home, '.mozilla/native-messaging-hosts/com.tabagent.host.json');
  tt.match(out.stdout, `wrote     ${manifestFile}`);
  tt.match(readFileSync(JSON.parse(readFileSync(manifestFile, 'utf8')).path, 'utf8'), `'--data-dir' '${path.join(home, '.local/share/TabAgent/db')}'`, 'the launcher points at the default data dir');
  const un = await run(process.execPath, [cliPath, 'uninstall-native-host', '--browser', 'firefox'], { env });
  tt.match(un.stdout, `removed   ${manifestFile}`);
  tt.notOk(existsSync(manifestFile));
});
