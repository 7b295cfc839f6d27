/** `tabagent doctor` as a user runs it: what passes, what fails and how to fix it, and the exit code that scripts read. */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { cliPath, tempDir } from '../transports/native/helpers.js';
import { startServerProcess } from '../helpers/server-process.js';

const run = promisify(execFile);
const tmp = tempDir('tabagent-doctor-');
t.teardown(() => tmp.remove());

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

async function doctor(args: string[], home: string): Promise<{ code: number; ok: boolean; checks: Record<string, Check>; stdout: string }> {
  const env = { ...process.env, HOME: home };
  const out = await run(process.execPath, [cliPath, 'doctor', '--json', ...args], { env }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
  );
  const parsed = JSON.parse(out.stdout) as { ok: boolean; checks: Check[] };
  return { code: out.code, ok: parsed.ok, checks: Object.fromEntries(parsed.checks.map((c) => [c.name, c])), stdout: out.stdout };
}

t.test('a fresh install passes, with the missing native host and server as warnings that say what to do', async (tt) => {
  const home = path.join(tmp.dir, 'fresh');
  mkdirSync(home);
  const r = await doctor(['--mode', 'http', '--port', '0', '--data-dir', path.join(home, 'data')], home);
  tt.equal(r.code, 0, 'exit 0 when nothing fails');
  tt.equal(r.ok, true);
  tt.equal(r.checks['node']?.status, 'ok');
  tt.match(r.checks['llama.cpp']?.detail ?? '', /loads the prebuilt binaries|loads a local build/, 'it says which llama.cpp build loads');
  tt.match(r.checks['gpu']?.detail ?? '', /no GPU in use: inference runs on the CPU/, 'no GPU here, and it says so');
  tt.equal(r.checks['data dir']?.status, 'ok');
  tt.equal(r.checks['native host']?.status, 'warn');
  tt.match(r.checks['native host']?.fix ?? '', /tabagent install-native-host --browser BROWSER --extension-id ID/);
});

t.test('a port held by another program and a data dir that cannot be written fail with their fixes, and exit 1', async (tt) => {
  const home = path.join(tmp.dir, 'broken');
  mkdirSync(home);
  const squatter = http.createServer((_req, res) => res.end('not tabagent'));
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  tt.teardown(() => squatter.close());
  const port = (squatter.address() as AddressInfo).port;
  const blocker = path.join(home, 'a-file');
  writeFileSync(blocker, 'not a directory');
  const r = await doctor(['--mode', 'http', '--port', String(port), '--data-dir', path.join(blocker, 'data')], home);
  tt.equal(r.code, 1, 'exit 1 when a check fails');
  tt.equal(r.ok, false);
  tt.equal(r.checks['http port']?.status, 'fail');
  tt.match(r.checks['http port']?.detail ?? '', new RegExp(`127\\.0\\.0\\.1:${port} is in use by another program`));
  tt.match(r.checks['http port']?.fix ?? '', /--port/);
  tt.equal(r.checks['data dir']?.status, 'fail');
  tt.match(r.checks['data dir']?.detail ?? '', /is not writable: (ENOTDIR|EEXIST)/);
  tt.match(r.checks['data dir']?.fix ?? '', /--data-dir/);
  tt.equal(r.checks['server']?.status, 'warn', 'a program that is not TabAgent is not taken for the server');
  const plain = await run(process.execPath, [cliPath, 'doctor', '--mode', 'http', '--port', String(port), '--data-dir', path.join(blocker, 'data')], { env: { ...process.env, HOME: home } }).then(
    () => '',
    (e: { stdout: string }) => e.stdout,
  );
  tt.match(plain, /FAIL +http port .*\n +fix: /, 'the table puts each fix under its failure');
  tt.match(plain, /2 checks failed\n$/);
});

t.test('a running server: its port and locked store are fine, and it is reported reachable', async (tt) => {
  const home = path.join(tmp.dir, 'running');
  mkdirSync(home);
  const server = await startServerProcess({ mode: 'http' });
  tt.teardown(() => server.stop());
  const r = await doctor(['--mode', 'http', '--port', String(server.port), '--data-dir', server.dataDir], home);
  tt.equal(r.code, 0, r.stdout);
  tt.match(r.checks['http port']?.detail ?? '', /held by a running TabAgent server/);
  tt.match(r.checks['store']?.detail ?? '', /held by the running server/);
  tt.equal(r.checks['server']?.status, 'ok');
  tt.match(r.checks['server']?.detail ?? '', new RegExp(`answers at http://127\\.0\\.0\\.1:${server.port}`));
});

t.test('a native host manifest that points at another install fails and says how to reinstall', async (tt) => {
  const home = path.join(tmp.dir, 'stale');
  const dir = path.join(home, '.config/chromium/NativeMessagingHosts');
  mkdirSync(dir, { recursive: true });
  const launcher = path.join(dir, 'tabagent-native-host');
  writeFileSync(launcher, "#!/bin/sh\nexec '/usr/bin/node' '/old/install/dist/src/transports/native/host-main.js' \"$@\"\n", { mode: 0o755 });
  writeFileSync(path.join(dir, 'com.tabagent.host.json'), JSON.stringify({ name: 'com.tabagent.host', path: launcher, type: 'stdio', allowed_origins: [] }));
  const r = await doctor(['--mode', 'http', '--port', '0', '--data-dir', path.join(home, 'data')], home);
  tt.equal(r.code, 1);
  tt.equal(r.checks['native host']?.status, 'fail');
  tt.match(r.checks['native host']?.detail ?? '', /chromium: the launcher runs another install/);
  tt.match(r.checks['native host']?.fix ?? '', /tabagent install-native-host/);

  // Reinstalling for this install makes the check pass.
  await run(process.execPath, [cliPath, 'install-native-host', '--browser', 'chromium', '--extension-id', 'abcdefghijklmnopabcdefghijklmnop', '--data-dir', path.join(home, 'data')], { env: { ...process.env, HOME: home } });
  const fixed = await doctor(['--mode', 'http', '--port', '0', '--data-dir', path.join(home, 'data')], home);
  tt.equal(fixed.checks['native host']?.status, 'ok');
  tt.match(fixed.checks['native host']?.detail ?? '', /installed for chromium, pointing at this install/);
});
