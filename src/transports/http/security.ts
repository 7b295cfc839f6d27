/** Who may talk to the server over HTTP: Host checks (DNS-rebinding protection), Origin checks and CORS, in one place. */
import { isIP } from 'node:net';
import os from 'node:os';
import type { Config } from '../../runtime/config.js';
import { TabAgentError } from '../../protocol/errors.js';

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]', '']);

/** Lower-cased host name of a Host header, without port, brackets or a trailing dot. */
export function hostName(hostHeader: string): string {
  let h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end > 0 ? h.slice(1, end) : h;
  } else {
    const colon = h.lastIndexOf(':');
    if (colon >= 0 && h.indexOf(':') === colon) h = h.slice(0, colon);
  }
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

export function isLoopbackName(name: string): boolean {
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 4) return name.startsWith('127.');
  return name === '::1' || name === '0:0:0:0:0:0:0:1';
}

function normaliseOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, '');
}

interface Compiled {
  config: Config;
  hosts: Set<string>;
  anyHost: boolean;
  origins: Set<string>;
  anyOrigin: boolean;
  /** The Host header last allowed under this config: clients repeat theirs, so most checks are one comparison. */
  lastAllowedHost: string;
}

/**
 * Built from the live config (CORS origins, allowed hosts and extension ids hot-reload), the
 * address the listener is bound to, and the machine's own addresses when it is bound to all of them.
 */
export class AccessPolicy {
  private compiled: Compiled | undefined;

  constructor(
    private readonly config: () => Config,
    private readonly bindHost: string,
  ) {}

  /** Refuses a request whose Host is neither a loopback name, the bound address nor a configured host. */
  checkHost(hostHeader: string): TabAgentError | undefined {
    if (!hostHeader) return new TabAgentError('BAD_REQUEST', 'the Host header is required');
    const c = this.current();
    if (hostHeader === c.lastAllowedHost) return undefined;
    const name = hostName(hostHeader);
    if (c.anyHost || isLoopbackName(name) || c.hosts.has(name)) {
      c.lastAllowedHost = hostHeader;
      return undefined;
    }
    return new TabAgentError(
      'FORBIDDEN',
      `host '${name}' is not allowed: use a loopback address or add it to http.allowed_hosts (this protects against DNS rebinding)`,
      { host: name },
    );
  }

  /**
   * A request without Origin comes from a non-browser client and is allowed; a browser page must be
   * same-origin, a configured CORS origin, or one of the configured extensions.
   */
  originAllowed(origin: string, hostHeader: string): boolean {
    if (!origin) return true;
    const o = normaliseOrigin(origin);
    if (o === 'null') return false;
    const c = this.current();
    if (c.anyOrigin || c.origins.has(o)) return true;
    return (o === `http://${hostHeader.toLowerCase()}`);
  }

  checkOrigin(origin: string, hostHeader: string): TabAgentError | undefined {
    if (this.originAllowed(origin, hostHeader)) return undefined;
    return new TabAgentError(
      'FORBIDDEN',
      `origin '${origin}' is not allowed: add it to http.cors_origins (or its extension id to extension_ids)`,
      { origin },
    );
  }

  private current(): Compiled {
    const config = this.config();
    if (this.compiled?.config === config) return this.compiled;
    const hosts = new Set(config.http.allowed_hosts.map((h) => hostName(h)));
    const bind = hostName(this.bindHost);
    if (WILDCARD_HOSTS.has(this.bindHost) || WILDCARD_HOSTS.has(bind)) {
      for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) hosts.add(a.address.toLowerCase());
      hosts.add(os.hostname().toLowerCase());
    } else hosts.add(bind);
    const origins = new Set(config.http.cors_origins.map(normaliseOrigin));
    for (const id of config.extension_ids) {
      origins.add(`chrome-extension://${id.toLowerCase()}`);
      origins.add(`moz-extension://${id.toLowerCase()}`);
    }
    this.compiled = { config, hosts, anyHost: hosts.has('*'), origins, anyOrigin: origins.has('*'), lastAllowedHost: '' };
    return this.compiled;
  }
}

/** Headers every response to an allowed cross-origin request carries. */
export function corsHeaders(origin: string): [string, string][] {
  if (!origin) return [];
  return [
    ['Access-Control-Allow-Origin', origin],
    ['Vary', 'Origin'],
    ['Access-Control-Expose-Headers', 'X-Request-Id, Retry-After'],
  ];
}

/** Headers of an allowed preflight (besides those of corsHeaders): the methods of that path, the headers asked for, and Private Network Access. */
export function preflightHeaders(methods: string[], requestHeaders: string, privateNetwork: boolean): [string, string][] {
  const headers: [string, string][] = [
    ['Access-Control-Allow-Methods', methods.join(', ')],
    ['Access-Control-Allow-Headers', requestHeaders || 'Content-Type, Authorization, X-Request-Id'],
    ['Access-Control-Max-Age', '600'],
  ];
  if (privateNetwork) headers.push(['Access-Control-Allow-Private-Network', 'true']);
  return headers;
}
