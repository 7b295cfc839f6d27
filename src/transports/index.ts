/** The transports a server can run, by name; `server.ts` starts those its mode asks for. */
import type { Actor } from '../actors/actor.js';
import type { ServerContext } from '../server.js';

export type TransportName = 'http' | 'native' | 'webrtc';
export type TransportFactory = (ctx: ServerContext) => Actor;

export const transportFactories: Partial<Record<TransportName, TransportFactory>> = {};
