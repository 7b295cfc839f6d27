/** A native-messaging port over Node streams (a spawned host's stdin/stdout): what the browser does, for tests, benchmarks and local tools. */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { NativePort } from '../../client/native-messaging.js';
import { FrameDecoder, frameText } from './frame-codec.js';

/**
 * Frames messages onto `output` and decodes frames from `input`, like a browser talking to its host.
 * Undecodable input ends the port (a browser disconnects a host that sends garbage).
 */
export function portFromStreams(input: Readable, output: Writable, maxInboundBytes = 64 * 1024 * 1024): NativePort {
  const messageListeners: ((m: unknown) => void)[] = [];
  const disconnectListeners: ((p: unknown) => void)[] = [];
  const decoder = new FrameDecoder(maxInboundBytes);
  let gone = false;
  const port: NativePort = {
    postMessage: (message) => {
      if (gone) throw new Error('the port is disconnected');
      output.write(frameText(JSON.stringify(message)));
    },
    onMessage: { addListener: (l) => void messageListeners.push(l) },
    onDisconnect: { addListener: (l) => void disconnectListeners.push(l) },
    disconnect: () => {
      if (gone) return;
      output.end();
      finish();
    },
  };
  const finish = (): void => {
    if (gone) return;
    gone = true;
    for (const l of disconnectListeners) l(port);
  };
  input.on('data', (chunk: Buffer) => {
    for (const item of decoder.push(chunk)) {
      if (!item.ok) {
        finish();
        return;
      }
      for (const l of messageListeners) l(item.value);
    }
  });
  input.on('close', finish);
  input.on('end', finish);
  output.on('error', finish);
  return port;
}

export interface SpawnedHost {
  port: NativePort;
  child: ChildProcessByStdio<Writable, Readable, Readable>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Spawns a native host (`node host-main.js ...args`) with pipes, the way a browser starts it. */
export function spawnHost(hostMain: string, args: string[], env: NodeJS.ProcessEnv = process.env): SpawnedHost {
  const child = spawn(process.execPath, [hostMain, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { port: portFromStreams(child.stdout, child.stdin), child, exited };
}
