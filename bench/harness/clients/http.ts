/** A minimal keep-alive HTTP/1.1 client over one socket: pipelined requests, Content-Length and chunked bodies, streamed body callbacks. */
import net from 'node:net';

export interface HttpResponse {
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  /** The body, unless the request streamed it to onData. */
  body: Buffer;
  bytes: number;
}

export interface HttpRequestOptions {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Streams body bytes as they arrive (the body is then not kept). */
  onData?: (chunk: Buffer) => void;
}

interface Pending {
  onData: ((chunk: Buffer) => void) | undefined;
  resolve(r: HttpResponse): void;
  reject(err: Error): void;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * One connection. Requests may be pipelined: replies come back in order and settle the oldest
 * pending request. A closed connection reconnects on the next request.
 */
export class HttpConnection {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly pending: Pending[] = [];
  private buf: Buffer = Buffer.alloc(0);
  // Parser state of the response at the head of `pending`.
  private status = 0;
  private headers: Record<string, string> = {};
  private mode: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-trailer' | 'close' = 'head';
  private remaining = 0;
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  static fromUrl(url: string): HttpConnection {
    const u = new URL(url);
    return new HttpConnection(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port || 80));
  }

  get hostHeader(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /** Builds the request bytes once, for profiles that send the same request over and over. */
  encode(opts: Omit<HttpRequestOptions, 'onData'>): Buffer {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
    let head = `${opts.method} ${opts.path} HTTP/1.1\r\nHost: ${this.hostHeader}\r\nConnection: keep-alive\r\n`;
    for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
    if (body) head += `Content-Length: ${body.length}\r\n`;
    head += '\r\n';
    return body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : Buffer.from(head, 'latin1');
  }

  request(opts: HttpRequestOptions): Promise<HttpResponse> {
    return this.send(this.encode(opts), opts.onData);
  }

  /** Sends pre-encoded request bytes. */
  send(bytes: Buffer, onData?: (chunk: Buffer) => void): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      this.pending.push({ onData, resolve, reject });
      if (this.socket) this.socket.write(bytes);
      else
        this.connect().then(
          (s) => s.write(bytes),
          () => {},
        );
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): Promise<net.Socket> {
    if (this.connecting) return this.connecting;
    this.connecting = new Promise((resolve, reject) => {
      const s = net.connect({ host: this.host, port: this.port, noDelay: true });
      s.once('connect', () => {
        this.socket = s;
        this.connecting = undefined;
        resolve(s);
      });
      s.on('data', (d: Buffer) => this.onData(d));
      s.on('error', (err) => this.onGone(err));
      s.on('close', () => this.onGone(Object.assign(new Error('connection closed by the server'), { code: 'ECONNRESET' })));
      s.once('error', (err) => {
        this.connecting = undefined;
        reject(err);
      });
    });
    return this.connecting;
  }

  private onGone(err: Error): void {
    if (this.mode === 'close' && this.pending.length > 0 && (err as { code?: string }).code === 'ECONNRESET') {
      this.complete();
    }
    this.socket = undefined;
    this.buf = Buffer.alloc(0);
    this.mode = 'head';
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length > 0) if (!this.step()) break;
  }

  /** Consumes what it can of the buffer; false when it needs more bytes. */
  private step(): boolean {
    switch (this.mode) {
      case 'head': {
        const end = this.buf.indexOf(CRLF2);
        if (end < 0) return false;
        const lines = this.buf.toString('latin1', 0, end).split('\r\n');
        this.buf = this.buf.subarray(end + 4);
        this.status = Number(lines[0]!.split(' ')[1]);
        this.headers = {};
        for (let i = 1; i < lines.length; i++) {
          const c = lines[i]!.indexOf(':');
          if (c > 0) this.headers[lines[i]!.slice(0, c).trim().toLowerCase()] = lines[i]!.slice(c + 1).trim();
        }
        this.parts = [];
        this.bytes = 0;
        const te = this.headers['transfer-encoding'];
        const cl = this.headers['content-length'];
        if (te && te.toLowerCase().includes('chunked')) this.mode = 'chunk-size';
        else if (cl !== undefined) {
          this.remaining = Number(cl);
          this.mode = 'length';
          if (this.remaining === 0) this.complete();
        } else if (this.status === 204 || this.status === 304) this.complete();
        else this.mode = 'close';
        return true;
      }
      case 'length': {
        const n = Math.min(this.remaining, this.buf.length);
        this.body(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining === 0) this.complete();
        return true;
      }
      case 'chunk-size': {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return false;
        const size = parseInt(this.buf.toString('latin1', 0, eol), 16);
        this.buf = this.buf.subarray(eol + 2);
        if (size === 0) this.mode = 'chunk-trailer';
        else {
          this.remaining = size;
          this.mode = 'chunk-data';
        }
        return true;
      }
      case 'chunk-data': {
        if (this.remaining > 0) {
          const n = Math.min(this.remaining, this.buf.length);
          this.body(this.buf.subarray(0, n));
          this.buf = this.buf.subarray(n);
          this.remaining -= n;
          if (this.remaining > 0) return false;
        }
        if (this.buf.length < 2) return false;
        this.buf = this.buf.subarray(2);
        this.mode = 'chunk-size';
        return true;
      }
      case 'chunk-trailer': {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return false;
        this.buf = this.buf.subarray(eol + 2);
        if (eol === 0) this.complete();
        return true;
      }
      case 'close':
        this.body(this.buf);
        this.buf = Buffer.alloc(0);
        return false;
    }
  }

  private body(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.bytes += chunk.length;
    const head = this.pending[0];
    if (head?.onData) head.onData(chunk);
    else this.parts.push(Buffer.from(chunk));
  }

  private complete(): void {
    this.mode = 'head';
    const head = this.pending.shift();
    const body = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = [];
    head?.resolve({ status: this.status, headers: this.headers, body, bytes: this.bytes });
  }
}

/** Reads the error code of a problem+json or OpenAI-shaped error body; falls back to HTTP_<status>. */
export function errorCode(res: HttpResponse): string {
  try {
    const body = JSON.parse(res.body.toString('utf8')) as { code?: unknown; error?: { code?: unknown } };
    const code = body.code ?? body.error?.code;
    if (typeof code === 'string' && code) return code;
  } catch {
    // not JSON: the status says it
  }
  return `HTTP_${res.status}`;
}
