/** install-service / uninstall-service as a user runs them: the unit systemd would load, idempotent, and the macOS and Windows forms. */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { installService, launchdPlistPath, uninstallService } from '../../src/cli/service.js';
import { cliPath, tempDir } from '../transports/native/helpers.js';

const run = promisify(execFile);
const tmp = tempDir('tabagent-service-');
t.teardown(() => tmp.remove());

t.test('on Linux: a systemd user unit that runs this install, written once, verified, and removed', async (tt) => {
  const home = path.join(tmp.dir, 'linux');
  mkdirSync(home);
  const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') };
  const first = await run(process.execPath, [cliPath, 'install-service', '--port', '3123', '--data-dir', path.join(home, 'data')], { env });
  const unit = path.join(home, '.config/systemd/user/tabagent.service');
  tt.match(first.stdout, new RegExp(`written +${unit}`));
  tt.match(first.stdout, /systemctl --user enable --now tabagent\.service/, 'it says how to enable it');
  const text = readFileSync(unit, 'utf8');
  tt.match(text, new RegExp(`^ExecStart=${process.execPath} ${cliPath} serve --no-stdio --data-dir ${path.join(home, 'data')} --port 3123$`, 'm'));
  tt.match(text, /^WantedBy=default\.target$/m, 'it starts with the user session');
  tt.match(text, /^Restart=on-failure$/m);

  const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  if (verify.error) tt.comment('systemd-analyze is not installed: the unit was not verified by systemd');
  else {
    tt.equal(verify.status, 0, `systemd-analyze verify accepts the unit: ${verify.stderr}`);
    tt.notMatch(verify.stderr, /tabagent\.service/, 'and has nothing to say about it');
  }

  const second = await run(process.execPath, [cliPath, 'install-service', '--port', '3123', '--data-dir', path.join(home, 'data')], { env });
  tt.match(second.stdout, /unchanged .*tabagent\.service/, 'a second install changes nothing and says so');

  // What `systemctl --user enable` leaves behind must go too, or systemd complains at every login.
  const wants = path.join(home, '.config/systemd/user/default.target.wants');
  mkdirSync(wants);
  symlinkSync(unit, path.join(wants, 'tabagent.service'));
  const un = await run(process.execPath, [cliPath, 'uninstall-service'], { env });
  tt.match(un.stdout, /removed +.*user\/tabagent\.service/);
  tt.match(un.stdout, /removed +.*default\.target\.wants\/tabagent\.service/);
  tt.notOk(existsSync(unit));
  const again = await run(process.execPath, [cliPath, 'uninstall-service'], { env });
  tt.match(again.stdout, /absent +.*tabagent\.service/, 'uninstalling twice is fine');
});

t.test('a path with spaces and a percent sign is quoted for systemd', async (tt) => {
  const home = path.join(tmp.dir, 'quoted');
  const result = installService({ command: ['/opt/my node/node', '/srv/tab agent/cli.js', 'serve', '--data-dir', '/data/50%'], platform: 'linux', home, env: {} });
  tt.equal(result.files[0]!.action, 'written');
  tt.match(readFileSync(result.files[0]!.path, 'utf8'), /^ExecStart="\/opt\/my node\/node" "\/srv\/tab agent\/cli\.js" serve --data-dir "\/data\/50%%"$/m);
});

t.test('on macOS: a launchd agent that runs at load and restarts after a crash', async (tt) => {
  const home = path.join(tmp.dir, 'mac');
  const result = installService({ command: ['/usr/local/bin/node', '/opt/tabagent/cli.js', 'serve', '--no-stdio'], platform: 'darwin', home });
  const plist = launchdPlistPath(home);
  tt.same(result.files, [{ path: plist, action: 'written' }]);
  const text = readFileSync(plist, 'utf8');
  tt.match(text, /<key>Label<\/key>\s*<string>com\.tabagent\.server<\/string>/);
  tt.match(text, /<key>ProgramArguments<\/key>\s*<array>\s*<string>\/usr\/local\/bin\/node<\/string>\s*<string>\/opt\/tabagent\/cli\.js<\/string>\s*<string>serve<\/string>\s*<string>--no-stdio<\/string>\s*<\/array>/);
  tt.match(text, /<key>RunAtLoad<\/key>\s*<true\/>/);
  tt.match(result.next[0]!, /^launchctl bootstrap gui\/\$\(id -u\) /);
  tt.equal(installService({ command: ['/usr/local/bin/node', '/opt/tabagent/cli.js', 'serve', '--no-stdio'], platform: 'darwin', home }).files[0]!.action, 'unchanged');
  tt.same(uninstallService({ platform: 'darwin', home }).files, [{ path: plist, action: 'removed' }]);
});

t.test('on Windows: the logon-task command to run, nothing written', async (tt) => {
  const result = installService({ command: ['C:\\Program Files\\nodejs\\node.exe', 'C:\\tabagent\\cli.js', 'serve', '--no-stdio'], platform: 'win32', home: tmp.dir });
  tt.same(result.files, []);
  tt.equal(result.next[0], 'schtasks /Create /F /SC ONLOGON /RL LIMITED /TN "TabAgent Server" /TR "\\"C:\\Program Files\\nodejs\\node.exe\\" \\"C:\\tabagent\\cli.js\\" \\"serve\\" \\"--no-stdio\\""');
  tt.match(uninstallService({ platform: 'win32', home: tmp.dir }).next[0]!, /^schtasks \/Delete \/F \/TN "TabAgent Server"$/);
});

t.test('an unsupported platform and a bad config are refused by name', async (tt) => {
  tt.throws(() => installService({ command: ['node'], platform: 'aix', home: tmp.dir }), /install-service supports Linux \(systemd\), macOS \(launchd\) and Windows/);
  const err = await run(process.execPath, [cliPath, 'install-service', '--mode', 'carrier-pigeon'], { env: { ...process.env, HOME: tmp.dir } }).then(
    () => undefined,
    (e: { stderr: string; code: number }) => e,
  );
  tt.equal(err?.code, 1);
  tt.match(err?.stderr ?? '', /mode/, 'the bad mode is named');
});
