/** Storage profiles over /v1/ws: save_message (writes) and get_history (reads) through the bus to the storage actor. */
import type { Outcome, Profile } from '../types.js';
import { openWs, type WsClient } from './ws.js';

interface StorageClient extends WsClient {
  sessionId: string;
}

/** A session of its own per client, seeded with `seedMessages` messages. */
async function setupSession(target: Parameters<Profile['setup']>[0], index: number, seedMessages: number): Promise<StorageClient> {
  const c = await openWs(target);
  const created = await callData(c, 'create_session', { title: `bench ${process.pid} ${index}` });
  if (!created.ok) throw new Error(`create_session over /v1/ws answered ${created.code}: ${created.message ?? ''}`);
  const sessionId = (created.data as { id?: string }).id;
  if (!sessionId) throw new Error(`create_session replied without a session id: ${JSON.stringify(created.data).slice(0, 200)}`);
  for (let i = 0; i < seedMessages; i++) {
    const o = await c.contract.call('save_message', message(sessionId, i));
    if (!o.ok) throw new Error(`save_message answered ${o.code}: ${o.message ?? ''}`);
  }
  return { ...c, sessionId };
}

/** A call whose reply data the caller needs (setup only; the hot path never keeps data). */
function callData(c: WsClient, route: string, payload: unknown): Promise<Outcome & { data?: unknown }> {
  return new Promise((resolve) => {
    const request_id = `setup-${Math.random().toString(36).slice(2)}`;
    const onMessage = (raw: Buffer): void => {
      let frame: { request_id?: string; success?: boolean; data?: unknown; error?: { code?: string; message?: string } };
      try {
        frame = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (frame.request_id !== request_id || frame.success === undefined) return;
      c.ws.off('message', onMessage);
      resolve(frame.success ? { ok: true, data: frame.data } : { ok: false, code: frame.error?.code ?? 'ERROR', message: frame.error?.message ?? '' });
    };
    c.ws.on('message', onMessage);
    c.ws.send(JSON.stringify({ request_id, route, payload }));
  });
}

const TEXT = 'The quick brown fox jumps over the lazy dog. '.repeat(4);

function message(sessionId: string, seq: number): unknown {
  return { session_id: sessionId, message: { role: seq % 2 === 0 ? 'user' : 'assistant', content: `${seq}: ${TEXT}` } };
}

export const storageWrite: Profile<StorageClient> = {
  name: 'storage-write',
  transport: 'storage',
  description: 'save_message over /v1/ws (one session per client; durable writes as configured)',
  needs: { mode: 'http' },
  defaults: { concurrency: 16 },
  setup: (target, index) => setupSession(target, index, 0),
  request: (c, seq) => c.contract.call('save_message', message(c.sessionId, seq)),
  async teardown(c) {
    c.ws.close();
  },
};

export const storageRead: Profile<StorageClient> = {
  name: 'storage-read',
  transport: 'storage',
  description: 'get_history limit 20 over /v1/ws (sessions of 100 messages)',
  needs: { mode: 'http' },
  defaults: { concurrency: 16 },
  setup: (target, index) => setupSession(target, index, 100),
  request: (c) => c.contract.call('get_history', { session_id: c.sessionId, limit: 20 }),
  async teardown(c) {
    c.ws.close();
  },
};
