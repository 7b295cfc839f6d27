import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import t from 'tap';
import { ConversationStore } from '../../src/runtime/storage/store.js';

const writer = path.resolve('test/runtime/fixtures/storage-writer.ts');

/** Runs the writer until it has acknowledged `killAfter` messages, SIGKILLs it mid-burst, records what it acknowledged, and returns the signal it died of. */
async function burstAndKill(dir: string, killAfter: number, acked: Map<string, string[]>): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let count = 0;
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  for await (const line of readline.createInterface({ input: child.stdout })) {
    const [kind, session, id] = line.split(' ');
    if (kind !== 'ack' || !session || !id) continue;
    if (!acked.has(session)) acked.set(session, []);
    acked.get(session)!.push(id);
    if (++count === killAfter) child.kill('SIGKILL');
  }
  return exited;
}

t.test('SIGKILL in the middle of a write burst loses nothing that was acknowledged', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tabagent-crash-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'conversations');

  // Two rounds: the second also checks that the first round's messages survived a crash recovery.
  const acked = new Map<string, string[]>();
  for (const round of [1, 2]) {
    t.equal(await burstAndKill(dir, 400, acked), 'SIGKILL', 'the writer died by SIGKILL, mid-burst');
    const store = await ConversationStore.open({ dir });
    for (const [session, ids] of acked) {
      const history = await store.getHistory(session, { limit: 1000, from: 'start' });
      const all = [...history.messages];
      let cursor = history.next_cursor;
      while (cursor) {
        const page = await store.getHistory(session, { limit: 1000, after: cursor });
        all.push(...page.messages);
        cursor = page.next_cursor;
      }
      const stored = new Set(all.map((m) => m.id));
      const missing = ids.filter((id) => !stored.has(id));
      t.same(missing, [], `round ${round}, ${session}: all ${ids.length} acknowledged messages are there`);
      t.equal((await store.getSession(session)).message_count, all.length, `round ${round}, ${session}: the session record matches its messages (no half-written batch)`);
    }
    await store.close();
  }
});
