/** HTTP profiles: GET /v1/health on keep-alive connections, and a streamed OpenAI chat completion counting tokens. */
import { performance } from 'node:perf_hooks';
import { HttpConnection, errorCode } from '../clients/http.js';
import type { Outcome, Profile, Target } from '../types.js';

interface GetClient {
  conn: HttpConnection;
  bytes: Buffer;
}

/** A GET of one path on one keep-alive connection per client; the request bytes are encoded once. */
export function httpGetProfile(name: string, path: string, description: string, base: (t: Target) => string = (t) => t.url): Profile<GetClient> {
  return {
    name,
    transport: 'http',
    description,
    needs: { mode: 'http' },
    defaults: { concurrency: 64 },
    async setup(target) {
      if (!base(target)) throw new Error('the target has no HTTP listener (start it in a mode with http)');
      const conn = HttpConnection.fromUrl(base(target));
      const bytes = conn.encode({ method: 'GET', path });
      // Connect (and check the route) before the clock starts.
      const res = await conn.send(bytes);
      if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
      return { conn, bytes };
    },
    async request(c) {
      const res = await c.conn.send(c.bytes);
      return res.status === 200 ? { ok: true, bytes: res.bytes } : { ok: false, code: errorCode(res), message: res.body.toString('utf8').slice(0, 200) };
    },
    async teardown(c) {
      c.conn.close();
    },
  };
}

export const httpHealth = httpGetProfile('http-health', '/v1/health', 'GET /v1/health through the bus, keep-alive, one connection per client');

export const CHAT_PROMPT = 'Tell me a story about the sea.';
export const CHAT_MAX_TOKENS = 32;

/** Counts tokens in an OpenAI SSE stream: usage.completion_tokens of the usage chunk, else content-bearing chunks. */
export class SseTokenCounter {
  chunks = 0;
  usageTokens: number | undefined;
  done = false;
  firstTokenAt: number | undefined;
  error: { code: string; message: string } | undefined;
  private partial = '';

  push(buf: Buffer): void {
    this.partial += buf.toString('utf8');
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl).trim();
      this.partial = this.partial.slice(nl + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') {
        this.done = true;
        continue;
      }
      try {
        const ev = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; usage?: { completion_tokens?: number }; error?: { code?: string; message?: string } };
        if (ev.error) this.error = { code: ev.error.code ?? 'STREAM_ERROR', message: ev.error.message ?? '' };
        if (ev.choices?.[0]?.delta?.content) {
          this.chunks++;
          this.firstTokenAt ??= performance.now();
        }
        if (typeof ev.usage?.completion_tokens === 'number') this.usageTokens = ev.usage.completion_tokens;
      } catch {
        // a partial or foreign line: ignored, the final count says what arrived
      }
    }
  }

  get tokens(): number {
    return this.usageTokens ?? this.chunks;
  }
}

export function chatBody(model: string, stream: boolean, maxTokens = CHAT_MAX_TOKENS): Record<string, unknown> {
  const body: Record<string, unknown> = { model, messages: [{ role: 'user', content: CHAT_PROMPT }], max_tokens: maxTokens, temperature: 0.8, seed: 7 };
  if (stream) {
    body['stream'] = true;
    body['stream_options'] = { include_usage: true };
  }
  return body;
}

export function requireModel(target: Target, profile: string): string {
  if (!target.model) throw new Error(`${profile} needs a model: the harness preloads a synthetic one when it starts the server; with --url pass --model <id>`);
  return target.model.id;
}

export const httpChatStream: Profile<{ conn: HttpConnection; bytes: Buffer }> = {
  name: 'http-chat-stream',
  transport: 'http',
  description: `POST /v1/chat/completions stream:true, ${CHAT_MAX_TOKENS} tokens, SSE`,
  needs: { mode: 'http', model: true },
  defaults: { concurrency: 4, durationS: 10 },
  async setup(target) {
    if (!target.url) throw new Error('the target has no HTTP listener');
    const model = requireModel(target, 'http-chat-stream');
    const conn = HttpConnection.fromUrl(target.url);
    const bytes = conn.encode({ method: 'POST', path: '/v1/chat/completions', headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' }, body: JSON.stringify(chatBody(model, true)) });
    return { conn, bytes };
  },
  async request(c): Promise<Outcome> {
    const counter = new SseTokenCounter();
    const t0 = performance.now();
    // The first bytes are kept: an error reply is a small JSON body that names what went wrong.
    let head = Buffer.alloc(0);
    const res = await c.conn.send(c.bytes, (chunk) => {
      if (head.length < 600) head = Buffer.concat([head, chunk]);
      counter.push(chunk);
    });
    if (res.status !== 200) {
      const errRes = { ...res, body: head };
      return { ok: false, code: errorCode(errRes), message: head.toString('utf8').slice(0, 300) };
    }
    if (counter.error) return { ok: false, code: counter.error.code, message: counter.error.message };
    if (!counter.done) return { ok: false, code: 'STREAM_INCOMPLETE', message: 'the SSE stream ended without data: [DONE]' };
    const o: Outcome = { ok: true, tokens: counter.tokens, bytes: res.bytes };
    if (counter.firstTokenAt !== undefined) o.ttftMs = counter.firstTokenAt - t0;
    return o;
  },
  async teardown(c) {
    c.conn.close();
  },
};
