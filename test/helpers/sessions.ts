/**
 * Carrier-neutral checks for conversation storage: each caller (the bus in test/actors, HTTP, WebSocket
 * and native messaging in test/sessions.test.ts) passes a `call(route, payload)` that speaks its own wire.
 */

export type Call = (route: string, payload: unknown) => Promise<any>;

/** Writes `count` messages to one session through `call`, in order, returning the acknowledged ids. */
export async function writeMessages(call: Call, sessionId: string, count: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const m = await call('save_message', { session_id: sessionId, message: { role: 'user', content: `${tag} ${i}` } });
    ids.push(m.id);
  }
  return ids;
}

/** Reads a whole history by paging backward with `before`, checking no page repeats a message. */
export async function readAllHistory(call: Call, sessionId: string, limit = 100): Promise<{ id: string; content: string }[]> {
  const out: { id: string; content: string }[] = [];
  let cursor: string | null = null;
  for (;;) {
    const page: { messages: { id: string; content: string }[]; next_cursor: string | null } = await call(
      'get_history',
      cursor ? { session_id: sessionId, limit, before: cursor } : { session_id: sessionId, limit },
    );
    out.unshift(...page.messages);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return out;
}

/**
 * Several writers at once (one per carrier, or several on one), all to one session. Returns what a
 * test should assert: every acknowledged id appears exactly once, and each writer's messages keep
 * their order in the history.
 */
export async function concurrentWriters(writers: { name: string; call: Call }[], sessionId: string, perWriter: number, read: Call) {
  const acked = await Promise.all(writers.map((w) => writeMessages(w.call, sessionId, perWriter, w.name)));
  const history = await readAllHistory(read, sessionId);
  const ids = history.map((m) => m.id);
  const allAcked = acked.flat();
  const position = new Map(ids.map((id, i) => [id, i]));
  return {
    history,
    missing: allAcked.filter((id) => !position.has(id)),
    duplicates: ids.length - new Set(ids).size,
    unexpected: ids.length - allAcked.length,
    /** Per writer: true when its messages appear in the order it wrote them. */
    inOrder: acked.map((list) => list.every((id, i) => i === 0 || (position.get(id) ?? -1) > (position.get(list[i - 1]!) ?? -1))),
  };
}
