/** The local IPC socket between native-messaging relays and the long-running server (a Unix socket; a named pipe on Windows). */
import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { TabAgentError } from '../../protocol/errors.js';

/** sun_path holds 108 bytes on Linux and 104 on macOS, NUL included. */
const MAX_SOCKET_PATH_BYTES = process.platform === 'darwin' ? 103 : 107;

const isPipe = (socketPath: string): boolean => socketPath.startsWith('\\\\.\\pipe\\');

/** Connects to the server's socket; rejects with the system error (ENOENT, ECONNREFUSED) when none listens. */
export function connectIpc(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath, allowHalfOpen: true });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Whether a live server answers on the socket (a leftover file of a crashed one does not). */
export async function isLive(socketPath: string): Promise<boolean> {
  try {
    (await connectIpc(socketPath)).destroy();
    return true;
  } catch {
    return false;
  }
}

function listenOnce(server: net.Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(socketPath, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export interface IpcListener {
  server: net.Server;
  /** Stops accepting and removes the socket file if it is still the one this listener created. */
  close(): Promise<void>;
}

/**
 * Listens on the socket. A socket file left by a dead server is removed; one that a live server
 * answers on is refused with a clear error (two servers must never share a data dir).
 */
export async function listenIpc(socketPath: string, onConnection: (socket: net.Socket) => void): Promise<IpcListener> {
  if (!isPipe(socketPath)) {
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new TabAgentError('IO_ERROR', `IPC socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes; Unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}: set native.socket_path to a shorter path`);
    }
    mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  }
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  try {
    await listenOnce(server, socketPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE') throw new TabAgentError('IO_ERROR', `cannot listen on IPC socket ${socketPath}: ${(err as Error).message}`);
    if (await isLive(socketPath)) {
      throw new TabAgentError('IO_ERROR', `another TabAgent server is already running on IPC socket ${socketPath} (same data dir); stop it or use another --data-dir`);
    }
    if (isPipe(socketPath)) throw new TabAgentError('IO_ERROR', `named pipe ${socketPath} is in use`);
    unlinkSync(socketPath);
    await listenOnce(server, socketPath).catch((again: Error) => {
      throw new TabAgentError('IO_ERROR', `cannot listen on IPC socket ${socketPath}: ${again.message}`);
    });
  }
  let inode: number | undefined;
  if (!isPipe(socketPath)) {
    // Only this user may connect: anyone who can reach the socket can use the server.
    chmodSync(socketPath, 0o600);
    inode = statSync(socketPath).ino;
  }
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if (inode !== undefined) {
          try {
            if (statSync(socketPath).ino === inode) unlinkSync(socketPath);
          } catch {
            // Already gone (Node removes it on close on some platforms).
          }
        }
      }),
  };
}
