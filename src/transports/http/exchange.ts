/** One HTTP request and its response on uWebSockets.js: headers read up front, abort tracking, corked writes, bodies with a size limit. */
import { performance } from 'node:perf_hooks';
import { LazyCancel, type CancelSignal } from '../../bus/cancel.js';
import { nextId } from '../../bus/envelope.js';
import { TabAgentError } from '../../protocol/errors.js';
import { openAiErrorBody, problemBody, retryAfterMs, statusLine, statusOf } from './errors.js';
import type { HttpRequest, HttpResponse } from './uws.js';

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const NO_HEADERS: readonly [string, string][] = [];

/** What the listener needs back from each exchange: a hook when it ends, and a hook when the client vanished first. */
export interface ExchangeOwner {
  finished(ex: Exchange, status: number): void;
  disconnected(ex: Exchange): void;
}

export class Exchange {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly host: string;
  readonly origin: string;
  readonly contentLength: string;
  /** Access-Control-Request-* headers, read only for OPTIONS. */
  readonly preflight: { method: string; headers: string; privateNetwork: boolean } | undefined;
  readonly requestId: string;
  /** Set when the X-Request-Id header was present but unusable. */
  readonly badRequestId: string | undefined;
  readonly startedAt = performance.now();
  /** Cancels the exchange's bus request when the client disconnects or the server shuts down. */
  readonly cancel = new LazyCancel();
  aborted = false;
  responded = false;
  /** OpenAI routes answer errors in OpenAI's shape; every other route in RFC 7807. */
  errorStyle: 'problem' | 'openai' = 'problem';
  /** Headers every response of this exchange carries (CORS). */
  headers: readonly [string, string][] = NO_HEADERS;
  /** Status of a streamed response once its head is written. */
  streamStatus = 0;
  /** Links in the listener's set of exchanges in flight. */
  prev: Exchange | undefined;
  next: Exchange | undefined;
  private remote: string | undefined;

  constructor(
    readonly res: HttpResponse,
    req: HttpRequest,
    private readonly owner: ExchangeOwner,
  ) {
    this.method = req.getMethod().toUpperCase();
    this.path = req.getUrl();
    this.query = req.getQuery() ?? '';
    this.host = req.getHeader('host');
    this.origin = req.getHeader('origin');
    // each header read is a call into uWS: only what this method can use
    this.contentLength = this.method === 'GET' || this.method === 'HEAD' ? '' : req.getHeader('content-length');
    this.preflight =
      this.method === 'OPTIONS'
        ? {
            method: req.getHeader('access-control-request-method'),
            headers: req.getHeader('access-control-request-headers'),
            privateNetwork: req.getHeader('access-control-request-private-network') === 'true',
          }
        : undefined;
    const given = req.getHeader('x-request-id');
    if (given === '' || REQUEST_ID.test(given)) this.requestId = given || nextId();
    else {
      this.requestId = nextId();
      this.badRequestId = given;
    }
    res.onAborted(() => {
      this.aborted = true;
      if (!this.responded) {
        this.cancel.abort(new TabAgentError('CANCELLED', 'the client disconnected'));
        this.owner.disconnected(this);
      }
    });
  }

  get signal(): CancelSignal {
    return this.cancel;
  }

  get open(): boolean {
    return !this.aborted && !this.responded;
  }

  /** The client's address as text (IPv4 or IPv6). */
  get remoteAddress(): string {
    if (this.remote === undefined) this.remote = this.aborted ? '' : Buffer.from(this.res.getRemoteAddressAsText()).toString();
    return this.remote;
  }

  /**
   * Reads the whole body, refusing past `limit` bytes: at once from Content-Length, or as soon as the
   * received bytes pass it (then the connection is closed, since the rest of the body will not be read).
   * Must be called synchronously from the uWS handler, before any await.
   */
  readBody(limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const declared = this.contentLength === '' ? NaN : Number(this.contentLength);
      if (declared > limit) {
        reject(tooLarge(limit, declared));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      this.res.onData((chunk, isLast) => {
        if (over) return;
        size += chunk.byteLength;
        if (size > limit) {
          over = true;
          reject(tooLarge(limit));
          return;
        }
        if (chunk.byteLength > 0) chunks.push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
        if (isLast) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      });
    });
  }

  /** Writes a whole response. Nothing happens when the client is already gone or a response was sent. */
  send(status: number, contentType: string, body: string | Buffer, extra: readonly [string, string][] = [], closeConnection = false): void {
    if (!this.open) return;
    this.responded = true;
    this.res.cork(() => {
      this.writeHeaders(status, contentType, extra);
      this.res.end(body, closeConnection);
    });
    this.owner.finished(this, status);
  }

  json(status: number, value: unknown, extra: readonly [string, string][] = []): void {
    this.send(status, 'application/json', JSON.stringify(value), extra);
  }

  /** Answers with an error in this exchange's style (problem+json, or OpenAI's shape). */
  fail(err: TabAgentError, extra: [string, string][] = []): void {
    const status = statusOf(err);
    const retry = retryAfterMs(err);
    if (retry !== undefined) extra.push(['Retry-After', String(Math.max(1, Math.ceil(retry / 1000)))]);
    // A body we did not read (too large) leaves bytes on the connection: close it rather than parse them as a request.
    const close = err.code === 'PAYLOAD_TOO_LARGE';
    if (this.errorStyle === 'openai') this.send(status, 'application/json', JSON.stringify(openAiErrorBody(err, this.requestId)), extra, close);
    else this.send(status, 'application/problem+json', JSON.stringify(problemBody(err, this.requestId, this.path)), extra, close);
  }

  /** Writes the head of a streamed response; the body follows through `write`. */
  writeHead(status: number, contentType: string, extra: readonly [string, string][] = []): void {
    if (!this.open) return;
    this.streamStatus = status;
    this.res.cork(() => this.writeHeaders(status, contentType, extra));
  }

  /** Status line and headers: the content type, the request id, CORS, then the caller's. Call inside cork. */
  private writeHeaders(status: number, contentType: string, extra: readonly [string, string][]): void {
    // uWS writes "200 OK" itself when no status is given: one call into it fewer on the common path
    if (status !== 200) this.res.writeStatus(statusLine(status));
    this.res.writeHeader('Content-Type', contentType);
    this.res.writeHeader('X-Request-Id', this.requestId);
    for (const [k, v] of this.headers) this.res.writeHeader(k, v);
    for (const [k, v] of extra) this.res.writeHeader(k, v);
  }

  /** Writes part of a streamed body; false when the socket is backed up (uWS holds the rest until it drains). */
  write(chunk: string): boolean {
    if (!this.open) return true;
    let ok = true;
    this.res.cork(() => {
      ok = this.res.write(chunk);
    });
    return ok;
  }

  /** Drops the connection (a reader too slow to keep up); onAborted then cancels the work. */
  abortConnection(): void {
    if (this.open) this.res.close();
  }

  /** Ends a streamed body. */
  end(chunk = ''): void {
    if (!this.open) return;
    this.responded = true;
    this.res.cork(() => this.res.end(chunk));
    this.owner.finished(this, this.streamStatus);
  }
}

function tooLarge(limit: number, declared?: number): TabAgentError {
  const size = declared === undefined ? 'the request body is' : `the request body (${declared} bytes) is`;
  return new TabAgentError('PAYLOAD_TOO_LARGE', `${size} larger than the limit of ${limit} bytes (http.body_limit_bytes)`, { limit_bytes: limit });
}
