/**
 * TabAgent client for browser extensions over native messaging (chrome.runtime.connectNative): matches
 * replies by request_id, reassembles continuation frames, exposes streams and cancel. Self-contained (no
 * imports) so an extension can ship the compiled file as is; see docs/native-messaging.md.
 */

/** The part of a `chrome.runtime.Port` this client uses (Firefox's `browser.runtime.Port` has the same shape). */
export interface NativePort {
  postMessage(message: unknown): void;
  onMessage: { addListener(listener: (message: any) => void): void };
  onDisconnect: { addListener(listener: (port: any) => void): void };
  disconnect(): void;
}

/** The bit of `chrome.runtime` / `browser.runtime` this client calls. */
export interface NativeRuntime {
  connectNative(application: string): NativePort;
  sendNativeMessage?(application: string, message: unknown): Promise<any>;
  lastError?: { message?: string } | undefined;
}

export type Priority = 'interactive' | 'normal' | 'background';

/** An error reply from the server (or the host), with the contract's code. */
export class TabAgentRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly requestId: string | null = null,
  ) {
    super(message);
    this.name = 'TabAgentRequestError';
  }
}

export interface RequestOptions {
  priority?: Priority;
  /** Aborting sends stop_generation for the request. */
  signal?: AbortSignal;
  /** Client-side limit: past it the request is stopped and rejects with TIMEOUT. */
  timeoutMs?: number;
  /** Called for each chunk frame of a streaming request. */
  onChunk?: (chunk: any) => void;
  /** Use this request_id instead of a generated one. */
  requestId?: string;
}

/** A streaming request: iterate it for chunks (`{delta}` for chat); `result` is the final reply's data. */
export interface NativeStream<C = any, T = any> extends AsyncIterable<C> {
  readonly requestId: string;
  readonly result: Promise<T>;
  /** Asks the server to stop (stop_generation); the stream then ends with its final reply. */
  cancel(): Promise<void>;
}

export interface ClientOptions {
  /** Frames the server pushes that answer no request (progress events, state changes). */
  onEvent?: (event: string, data: unknown) => void;
  /** Errors not tied to a request (request_id null), e.g. AUTH_ERROR when the host refuses the extension. */
  onError?: (error: TabAgentRequestError) => void;
  /** Called once when the port disconnects (the host exited, or close() was called). */
  onDisconnect?: (reason: string) => void;
}

interface Pending {
  resolve(data: unknown): void;
  reject(err: TabAgentRequestError): void;
  onChunk?: (chunk: unknown) => void;
  cleanup(): void;
}

interface Frame {
  request_id?: string | null;
  success?: boolean;
  data?: unknown;
  error?: { code: string; message: string; details?: unknown };
  event?: string;
  part?: number;
  parts?: number;
}

export const DEFAULT_HOST_NAME = 'com.tabagent.host';

/** Errors after which the host process exits: every pending request fails with them. */
const FATAL_CODES = new Set(['AUTH_ERROR', 'UNAVAILABLE']);

function defaultRuntime(): NativeRuntime {
  const g = globalThis as { chrome?: { runtime?: NativeRuntime }; browser?: { runtime?: NativeRuntime } };
  const runtime = g.browser?.runtime ?? g.chrome?.runtime;
  if (!runtime?.connectNative) throw new Error('native messaging is not available here: add "nativeMessaging" to the extension\'s permissions');
  return runtime;
}

function randomPrefix(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID ? c.randomUUID().slice(0, 8) : Math.random().toString(36).slice(2, 10);
}

export class TabAgentNativeClient {
  private readonly pending = new Map<string, Pending>();
  /** Continuation parts being collected, by request_id. */
  private readonly parts = new Map<string, string[]>();
  private readonly prefix = randomPrefix();
  private seq = 0;
  private disconnected = false;

  /** Opens a port to the host (one host process per port; it relays to the shared server). */
  static connect(hostName: string = DEFAULT_HOST_NAME, options: ClientOptions = {}, runtime: NativeRuntime = defaultRuntime()): TabAgentNativeClient {
    return new TabAgentNativeClient(runtime.connectNative(hostName), options, runtime);
  }

  constructor(
    private readonly port: NativePort,
    private readonly options: ClientOptions = {},
    private readonly runtime?: NativeRuntime,
  ) {
    port.onMessage.addListener((message) => this.onMessage(message as Frame));
    port.onDisconnect.addListener(() => {
      const reason = this.runtime?.lastError?.message ?? 'the native host disconnected';
      this.shutdown(new TabAgentRequestError('UNAVAILABLE', reason));
      this.options.onDisconnect?.(reason);
    });
  }

  get connected(): boolean {
    return !this.disconnected;
  }

  /** Requests waiting for their final reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends one request and resolves with the reply's `data` (rejects with TabAgentRequestError). */
  request<T = any>(route: string, payload?: unknown, options: RequestOptions = {}): Promise<T> {
    const requestId = options.requestId ?? `${this.prefix}-${++this.seq}`;
    return this.start(requestId, route, payload, options) as Promise<T>;
  }

  /** Sends a streaming request (`stream: true` is added to an object payload). */
  stream<C = any, T = any>(route: string, payload: Record<string, unknown> = {}, options: RequestOptions = {}): NativeStream<C, T> {
    const requestId = options.requestId ?? `${this.prefix}-${++this.seq}`;
    const queue: C[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    const result = this.start(requestId, route, { ...payload, stream: true }, {
      ...options,
      onChunk: (chunk) => {
        options.onChunk?.(chunk);
        queue.push(chunk as C);
        wake?.();
      },
    }) as Promise<T>;
    result.then(
      () => {
        finished = true;
        wake?.();
      },
      (err: unknown) => {
        finished = true;
        failure = err;
        wake?.();
      },
    );
    const client = this;
    return {
      requestId,
      result,
      cancel: async () => {
        await client.cancel(requestId);
      },
      async *[Symbol.asyncIterator]() {
        for (;;) {
          if (queue.length) {
            yield queue.shift()!;
            continue;
          }
          if (finished) {
            if (failure) throw failure;
            return;
          }
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
    };
  }

  /** Stops a request by its id (route stop_generation); resolves with whether it was still running. */
  async cancel(requestId: string): Promise<boolean> {
    const reply = await this.request<{ stopped: boolean }>('stop_generation', { request_id: requestId }, { priority: 'interactive' });
    return reply.stopped;
  }

  /** Disconnects the port: the host sees EOF, and the requests still pending here fail with CANCELLED. */
  close(): void {
    if (this.disconnected) return;
    this.port.disconnect();
    this.shutdown(new TabAgentRequestError('CANCELLED', 'the client closed the connection'));
    this.options.onDisconnect?.('closed by the client');
  }

  private start(requestId: string, route: string, payload: unknown, options: RequestOptions): Promise<unknown> {
    if (this.disconnected) return Promise.reject(new TabAgentRequestError('UNAVAILABLE', 'the native port is disconnected', undefined, requestId));
    if (this.pending.has(requestId)) return Promise.reject(new TabAgentRequestError('CONFLICT', `request_id '${requestId}' is already in flight`, undefined, requestId));
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => void this.cancel(requestId).catch(() => {});
      const entry: Pending = {
        resolve,
        reject,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          options.signal?.removeEventListener('abort', onAbort);
        },
      };
      if (options.onChunk) entry.onChunk = options.onChunk;
      this.pending.set(requestId, entry);
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.settle(requestId, undefined, new TabAgentRequestError('TIMEOUT', `no reply within ${options.timeoutMs} ms`, undefined, requestId));
          void this.cancel(requestId).catch(() => {});
        }, options.timeoutMs);
      }
      if (options.signal) {
        if (options.signal.aborted) queueMicrotask(onAbort);
        else options.signal.addEventListener('abort', onAbort, { once: true });
      }
      const frame: Record<string, unknown> = { request_id: requestId, route, payload: payload ?? null };
      if (options.priority) frame['priority'] = options.priority;
      try {
        this.port.postMessage(frame);
      } catch (err) {
        this.settle(requestId, undefined, new TabAgentRequestError('BAD_REQUEST', `could not send the request: ${(err as Error).message}`, undefined, requestId));
      }
    });
  }

  private onMessage(frame: Frame): void {
    if (frame === null || typeof frame !== 'object') return;
    if (frame.event === 'continuation') {
      this.onPart(frame);
      return;
    }
    const id = frame.request_id;
    if (frame.event === 'chunk' && typeof id === 'string') {
      this.pending.get(id)?.onChunk?.(frame.data);
      return;
    }
    if (frame.event !== undefined && id === undefined) {
      this.options.onEvent?.(frame.event, frame.data);
      return;
    }
    if (typeof frame.success !== 'boolean') return;
    const error = frame.success ? undefined : new TabAgentRequestError(frame.error?.code ?? 'INTERNAL_ERROR', frame.error?.message ?? 'unknown error', frame.error?.details, id ?? null);
    if (typeof id === 'string') {
      this.settle(id, frame.data, error);
      return;
    }
    if (error) {
      this.options.onError?.(error);
      if (FATAL_CODES.has(error.code)) this.shutdown(error);
    }
  }

  /** Collects the parts of a frame too large for one native message, then handles the joined frame. */
  private onPart(frame: Frame): void {
    const key = frame.request_id ?? '';
    const part = frame.part ?? 0;
    let list = this.parts.get(key);
    if (part === 0 || !list) this.parts.set(key, (list = []));
    list[part] = String(frame.data ?? '');
    if (part + 1 < (frame.parts ?? 1)) return;
    this.parts.delete(key);
    let whole: Frame;
    try {
      whole = JSON.parse(list.join('')) as Frame;
    } catch (err) {
      if (typeof frame.request_id === 'string') {
        this.settle(frame.request_id, undefined, new TabAgentRequestError('JSON_ERROR', `continuation frames did not join into valid JSON: ${(err as Error).message}`, undefined, frame.request_id));
      }
      return;
    }
    this.onMessage(whole);
  }

  private settle(id: string, data: unknown, error: TabAgentRequestError | undefined): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    entry.cleanup();
    if (error) entry.reject(error);
    else entry.resolve(data);
  }

  private shutdown(error: TabAgentRequestError): void {
    this.disconnected = true;
    for (const [id, entry] of this.pending) {
      entry.cleanup();
      entry.reject(new TabAgentRequestError(error.code, error.message, error.details, id));
    }
    this.pending.clear();
    this.parts.clear();
  }
}

/**
 * One request through `runtime.sendNativeMessage` (the browser starts a host for it and takes its first
 * message as the answer). Not for streams or replies over 1 MiB: use a TabAgentNativeClient for those.
 */
export function sendNativeRequest<T = any>(route: string, payload?: unknown, options: { hostName?: string; runtime?: NativeRuntime; requestId?: string; priority?: Priority } = {}): Promise<T> {
  const runtime = options.runtime ?? defaultRuntime();
  if (!runtime.sendNativeMessage) return Promise.reject(new Error('sendNativeMessage is not available here'));
  const requestId = options.requestId ?? `once-${randomPrefix()}`;
  const frame: Record<string, unknown> = { request_id: requestId, route, payload: payload ?? null };
  if (options.priority) frame['priority'] = options.priority;
  // MV3 Chrome and Firefox both return a promise when no callback is given.
  const sent = runtime.sendNativeMessage(options.hostName ?? DEFAULT_HOST_NAME, frame) as Promise<Frame | undefined>;
  return Promise.resolve(sent).then(
    (reply) => {
      if (!reply || typeof reply !== 'object') throw new TabAgentRequestError('UNAVAILABLE', 'the native host sent no reply', undefined, requestId);
      if (reply.event === 'continuation' || reply.event === 'chunk') {
        throw new TabAgentRequestError('BAD_REQUEST', `route '${route}' answered with more than one message: use a TabAgentNativeClient (connectNative) for streams and replies over 1 MiB`, undefined, requestId);
      }
      if (!reply.success) throw new TabAgentRequestError(reply.error?.code ?? 'INTERNAL_ERROR', reply.error?.message ?? 'unknown error', reply.error?.details, requestId);
      return reply.data as T;
    },
    (err: Error) => {
      throw new TabAgentRequestError('UNAVAILABLE', err.message, undefined, requestId);
    },
  );
}
