/** uWebSockets.js as this project loads it (a CommonJS addon; its default export is the module object). */
import uWS from 'uWebSockets.js';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket } from 'uWebSockets.js';

/** uSockets reuses ports by default (SO_REUSEPORT), so a second server would silently share one; never do that. */
export const LISTEN_EXCLUSIVE_PORT = 1;

export default uWS;
