/** Waits in tests are deadlines, not loop counts: a loaded CI machine makes a test slower, never wrong. */

/** Polls `probe` until it returns something other than undefined; fails naming `what` once `ms` have passed. */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000, stepMs = 20): Promise<T> {
  const v = await settle(probe, (x) => x !== undefined, ms, stepMs);
  if (v === undefined) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  return v;
}

/** Polls `probe` until `done` holds of its value or `ms` have passed, and returns the last value for the test to assert on. */
export async function settle<T>(probe: () => Promise<T> | T, done: (v: T) => boolean, ms = 30_000, stepMs = 20): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (done(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
