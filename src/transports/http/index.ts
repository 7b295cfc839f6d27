/** Registers the HTTP transport (HTTP + WebSocket on uWebSockets.js) with the transport table. */
import { transportFactories } from '../index.js';
import { HttpTransport } from './transport.js';

transportFactories.http = (ctx) => new HttpTransport(ctx);

export { startHttpListener, type HttpListener, type HttpListenerOptions } from './listener.js';
