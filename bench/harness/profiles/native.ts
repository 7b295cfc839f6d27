/** Native messaging profiles: the host spawned as a browser spawns it (manifest path, origin argument, pipes), frames pipelined. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContractClient, type ContractFrame } from '../clients/contract.js';
import type { Profile, Target } from '../types.js';
import { CHAT_MAX_TOKENS, CHAT_PROMPT, requireModel } from './http.js';

/** A fixed extension id (32 letters a-p, as Chrome makes them) allowed by servers the harness starts. */
export const BENCH_EXTENSION_ID = 'benchbenchbenchbenchbenchbenchbe';
export const BENCH_ORIGIN = `chrome-extension://${BENCH_EXTENSION_ID}/`;

/** Little-endian length prefix: native byte order on every platform Node runs this harness on (x64, arm64). */
export function encodeFrame(obj: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(obj), 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32LE(json.length, 0);
  return Buffer.concat([head, json]);
}

/** Splits a byte stream into frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (json: string) => void) {}
  push(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32LE(0);
      if (this.buf.length < 4 + n) return;
      this.onFrame(this.buf.toString('utf8', 4, 4 + n));
      this.buf = this.buf.subarray(4 + n);
    }
  }
}

/**
 * The host's command line, found the way a browser finds it: `tabagent install-native-host` writes a manifest into a
 * scratch user-data-dir and the manifest's `path` is the launcher. TABAGENT_BENCH_NATIVE_COMMAND (a JSON array) overrides it.
 */
export function nativeHostCommand(target: Target): string[] {
  const override = process.env['TABAGENT_BENCH_NATIVE_COMMAND'];
  if (override) return JSON.parse(override) as string[];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-bench-browser-'));
  try {
    const r = spawnSync(process.execPath, [target.cliPath, 'install-native-host', '--browser', 'chromium', '--extension-id', BENCH_EXTENSION_ID, '--user-data-dir', dir], {
      encoding: 'utf8',
      env: { ...process.env, ...target.env },
      timeout: 30_000,
    });
    if (r.status !== 0) throw new Error(`tabagent install-native-host failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().slice(0, 400)} (the native transport may not be in this build yet)`);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'NativeMessagingHosts', 'com.tabagent.host.json'), 'utf8')) as { path: string };
    return [manifest.path];
  } finally {
    // The launcher lives beside the manifest on some layouts: keep the dir until the process ends.
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
}

export interface NativeClient {
  child: ChildProcess;
  contract: ContractClient;
  stderr: string[];
}

const commands = new WeakMap<Target, string[]>();

export async function spawnNativeHost(target: Target): Promise<NativeClient> {
  let cmd = commands.get(target);
  if (!cmd) commands.set(target, (cmd = nativeHostCommand(target)));
  const child = spawn(cmd[0]!, [...cmd.slice(1), BENCH_ORIGIN], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...target.env } });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (t: string) => {
    stderr.push(t);
    if (stderr.length > 20) stderr.shift();
  });
  const contract = new ContractClient((frame) => child.stdin!.write(encodeFrame(frame)));
  const reader = new FrameReader((json) => {
    try {
      contract.receive(JSON.parse(json) as ContractFrame);
    } catch {
      // not JSON: its request times out and is counted
    }
  });
  child.stdout!.on('data', (d: Buffer) => reader.push(d));
  child.stdin!.on('error', () => {});
  child.once('exit', (code) => contract.fail(`the native host exited (code ${code}): ${stderr.join('').trim().slice(-300)}`));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (err) => reject(new Error(`cannot spawn the native host ${cmd![0]}: ${err.message}`)));
  });
  return { child, contract, stderr };
}

async function closeHost(c: NativeClient): Promise<void> {
  if (c.child.exitCode !== null) return;
  const exited = new Promise((r) => c.child.once('exit', r));
  c.child.stdin!.end();
  const t = setTimeout(() => c.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

export const nativeHealth: Profile<NativeClient> = {
  name: 'native-health',
  transport: 'native',
  description: 'health over a spawned native host (relay to the server), frames pipelined on one host',
  needs: { mode: 'all' },
  sharedClient: true,
  defaults: { concurrency: 64 },
  async setup(target) {
    const c = await spawnNativeHost(target);
    const first = await c.contract.call('health', null);
    if (!first.ok) {
      await closeHost(c);
      throw new Error(`health over the native host answered ${first.code}: ${first.message ?? ''}`);
    }
    return c;
  },
  request: (c) => c.contract.call('health', null),
  teardown: closeHost,
};

export const nativeChat: Profile<NativeClient & { model: string }> = {
  name: 'native-chat',
  transport: 'native',
  description: `chat stream:true over a spawned native host, ${CHAT_MAX_TOKENS} tokens, streams pipelined on one host`,
  needs: { mode: 'all', model: true },
  sharedClient: true,
  defaults: { concurrency: 4, durationS: 10 },
  async setup(target) {
    const model = requireModel(target, 'native-chat');
    return { ...(await spawnNativeHost(target)), model };
  },
  request: (c) => c.contract.call('chat', { model: c.model, messages: [{ role: 'user', content: CHAT_PROMPT }], max_tokens: CHAT_MAX_TOKENS, temperature: 0.8, seed: 7, stream: true }),
  teardown: closeHost,
};
