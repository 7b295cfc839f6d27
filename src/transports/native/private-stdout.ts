/** Native-messaging frames on a private copy of stdout, with fd 1 itself pointed at stderr, so native libraries that printf cannot corrupt the stream. */
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';

/** Writes every byte with blocking writes, as Node's own stdout does for pipes and files on POSIX: frames are never half-written at exit. */
function fdWritable(fd: number): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    final(callback) {
      closeSync(fd);
      callback();
    },
  });
}

/**
 * llama.cpp (in the inference workers, which share this process's file descriptors) prints some errors to
 * fd 1 with printf; a browser that reads them as a frame length disconnects the host. So the frames get a
 * new descriptor for the same pipe, and fd 1 is reopened onto stderr: whatever else writes to stdout lands
 * in the log. Where that is impossible (Windows, stdout not a pipe or file, no /proc or /dev/fd), frames
 * keep using process.stdout. Must run before anything touches process.stdout.
 */
export function takePrivateStdout(): Writable {
  if (process.platform === 'win32') return process.stdout;
  const fdDir = process.platform === 'linux' ? '/proc/self/fd' : '/dev/fd';
  let framesFd: number;
  try {
    const stat = fstatSync(1);
    if (!stat.isFIFO() && !stat.isFile()) return process.stdout;
    // 'a': reopening a file must not truncate it; for a pipe the flag does nothing.
    framesFd = openSync(`${fdDir}/1`, 'a');
  } catch {
    return process.stdout;
  }
  closeSync(1);
  // open() returns the lowest free descriptor, 1. Something must hold it: a file opened later would get it otherwise.
  let fd: number;
  try {
    fd = openSync(`${fdDir}/2`, 'a');
  } catch {
    fd = openSync('/dev/null', 'a');
  }
  // Another thread opened a file in between and got fd 1: that one is theirs, and this copy is not needed.
  if (fd !== 1) closeSync(fd);
  return fdWritable(framesFd);
}
