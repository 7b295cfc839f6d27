import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function frame(obj: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(obj));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length);
  return Buffer.concat([head, body]);
}

/** Sends one native-messaging frame on the server's stdin and reads the first reply frame from its stdout. */
async function nativeHealth(server: ServerProcess): Promise<unknown> {
  const stdout = server.child.stdout!;
  const reply = new Promise<unknown>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error('no reply on stdout')), 15_000);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
        clearTimeout(timer);
        stdout.off('data', onData);
        resolve(JSON.parse(buf.subarray(4, 4 + buf.readUInt32LE(0)).toString('utf8')));
      }
    };
    stdout.on('data', onData);
  });
  server.child.stdin!.write(frame({ request_id: 'h1', route: 'health', payload: null }));
  return reply;
}

async function httpHealth(url: string): Promise<{ status: string }> {
  const res = await fetch(`${url}/v1/health`);
  return (await res.json()) as { status: string };
}

const expected = {
  native: { http: false, webrtc: false, native: true },
  http: { http: true, webrtc: false, native: false },
  webrtc: { http: false, webrtc: true, native: false },
  both: { http: true, webrtc: false, native: true },
  all: { http: true, webrtc: true, native: true },
} as const;

for (const mode of ['native', 'http', 'webrtc', 'both', 'all'] as const) {
  t.test(`mode ${mode} starts exactly its transports and SIGTERM ends it with exit 0`, async (t) => {
    const server = await startServerProcess({ mode, args: ['--no-stdio'].filter(() => !expected[mode].native) });
    const want = expected[mode];
    t.equal(Boolean(server.listeners['http']), want.http, 'HTTP listener');
    t.equal(Boolean(server.listeners['webrtc']), want.webrtc, 'WebRTC signalling listener');
    if (want.http) t.equal((await httpHealth(server.url)).status, 'ok');
    if (want.webrtc) {
      const res = await fetch(`${server.listeners['webrtc']}/v1/webrtc/session/none`);
      t.equal(res.status, 404, 'signalling answers on the webrtc port');
      const other = await fetch(`${server.listeners['webrtc']}/v1/health`);
      t.equal(other.status, 404, 'the webrtc port serves signalling only');
    }
    if (want.native) t.match(await nativeHealth(server), { request_id: 'h1', success: true, data: { status: 'ok' } }, 'stdin is read');
    const started = Date.now();
    t.equal(await server.stop('SIGTERM'), 0, 'exit code 0');
    t.ok(Date.now() - started < 10_000, 'within the drain timeout');
    t.match(server.stderr(), /"msg":"stopped"/);
  });
}

for (const mode of ['native', 'both', 'all'] as const) {
  t.test(`stdin EOF ends mode ${mode} with exit 0`, async (t) => {
    const server = await startServerProcess({ mode });
    server.child.stdin!.end();
    const code = await new Promise<number | null>((resolve) => server.child.once('exit', resolve));
    t.equal(code, 0);
    await server.stop();
  });
}

/** Runs the CLI to completion and returns its exit code and output. */
function run(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('exit', (code) => resolve({ code, stderr, stdout }));
  });
}

t.test('a port already in use is a clear error naming the port, not a stack trace', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as net.AddressInfo).port;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-port-'));
  const res = await run(['serve', '--mode', 'http', '--port', String(port), '--data-dir', dir]);
  blocker.close();
  t.equal(res.code, 1);
  t.match(res.stderr, new RegExp(`tabagent: .*port ${port}.*already in use`));
  t.notMatch(res.stderr, /\n\s+at /, 'no stack trace');
});

t.test('an unknown mode is refused, listing the modes', async (t) => {
  const res = await run(['serve', '--mode', 'turbo']);
  t.equal(res.code, 1);
  t.match(res.stderr, /mode = "turbo" from command-line flag: .*"native" \| "http" \| "webrtc" \| "both" \| "all"/);
});

t.test('a bad config file is refused, naming the file and the problem', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-badcfg-'));
  const file = path.join(dir, 'bad.toml');
  writeFileSync(file, 'port = "three thousand"\n');
  const res = await run(['serve', '--config', file]);
  t.equal(res.code, 1);
  t.match(res.stderr, /port = "three thousand" from config file .*bad\.toml/);
});

t.test('config print shows each value with its source', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-cfgprint-'));
  const file = path.join(dir, 'c.yaml');
  writeFileSync(file, 'webrtc_port: 9100\n');
  const res = await run(['config', 'print', '--config', file]);
  t.equal(res.code, 0);
  t.match(res.stdout, /^webrtc_port\s+9100\s+\(file\)$/m);
  t.match(res.stdout, /^port\s+3000\s+\(default\)$/m);
});
