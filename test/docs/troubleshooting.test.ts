/** docs/troubleshooting.md has an entry (cause and fix) for every error code a client can see, and no entry for a code that does not exist. */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { ErrorCodes } from '../../src/protocol/errors.js';

const doc = readFileSync(new URL('../../docs/troubleshooting.md', import.meta.url), 'utf8');
const entries = new Map([...doc.matchAll(/^### ([A-Z_]+)\n([\s\S]*?)(?=^##)/gm)].map((m) => [m[1]!, m[2]!]));

t.test('every error code has an entry with a fix', async (tt) => {
  for (const code of ErrorCodes) {
    const entry = entries.get(code);
    tt.ok(entry, `${code} has an entry`);
    tt.match(entry ?? '', /Fix:/, `${code}'s entry says how to fix it`);
  }
});

t.test('no entry describes a code the server does not have', async (tt) => {
  tt.same([...entries.keys()].filter((c) => !(ErrorCodes as readonly string[]).includes(c)), []);
});
