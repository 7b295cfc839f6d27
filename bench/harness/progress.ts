/** The live progress line: rewritten in place on a TTY, a periodic plain line otherwise (CI logs). */

export interface ProgressState {
  label: string;
  elapsedS: number;
  done: number;
  intervalRps: number;
  errors: number;
  p99Ms: number;
  inFlight: number;
}

export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private lastLine = 0;
  private dirty = false;

  constructor(private readonly enabled: boolean) {}

  update(s: ProgressState): void {
    if (!this.enabled) return;
    const line = `${s.label}  ${s.elapsedS.toFixed(1)}s  ${s.done} done  ${Math.round(s.intervalRps)} req/s  p99 ${s.p99Ms.toFixed(2)} ms  in flight ${s.inFlight}  errors ${s.errors}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.dirty = true;
    } else if (Date.now() - this.lastLine >= 5000) {
      this.lastLine = Date.now();
      process.stderr.write(`${line}\n`);
    }
  }

  /** Leaves the terminal on a fresh line. */
  end(): void {
    if (this.dirty) process.stderr.write('\n');
    this.dirty = false;
  }

  note(message: string): void {
    if (!this.enabled) return;
    this.end();
    process.stderr.write(`${message}\n`);
  }
}
