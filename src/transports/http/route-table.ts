/** Method and path matching for the HTTP listener: static paths by map lookup, `{field}` paths by segments, and 405s that know the allowed methods. */

export interface Match<H> {
  handler: H;
  /** Read-only: a static path's match is made once and shared by every request. */
  params: Readonly<Record<string, string>>;
}

type Found<H> = { kind: 'found'; match: Match<H> };
export type Lookup<H> = Found<H> | { kind: 'method'; allowed: string[] } | { kind: 'none' };

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

interface Pattern<H> {
  path: string;
  /** Literal segment text, or null where a parameter goes. */
  segments: (string | null)[];
  names: string[];
  methods: Map<string, H>;
}

export class RouteTable<H> {
  /** Static paths, each method's lookup result built once (the lookup on every request allocates nothing). */
  private readonly statics = new Map<string, Map<string, Found<H>>>();
  private readonly patterns: Pattern<H>[] = [];

  /** Adds a binding; returns false when that method and path are already taken (the first one wins). */
  add(method: string, path: string, handler: H): boolean {
    if (!path.includes('{')) {
      let methods = this.statics.get(path);
      if (!methods) this.statics.set(path, (methods = new Map()));
      if (methods.has(method)) return false;
      methods.set(method, { kind: 'found', match: { handler, params: NO_PARAMS } });
      return true;
    }
    let pattern = this.patterns.find((p) => p.path === path);
    if (!pattern) {
      const parts = path.split('/');
      const names: string[] = [];
      const segments = parts.map((s) => {
        const m = /^\{([A-Za-z0-9_]+)\}$/.exec(s);
        if (!m) return s;
        names.push(m[1]!);
        return null;
      });
      pattern = { path, segments, names, methods: new Map() };
      this.patterns.push(pattern);
      // More literal segments first, so /v1/models/loaded-style paths beat a parameter in the same place.
      this.patterns.sort((a, b) => b.segments.filter((s) => s !== null).length - a.segments.filter((s) => s !== null).length);
    }
    if (pattern.methods.has(method)) return false;
    pattern.methods.set(method, handler);
    return true;
  }

  lookup(method: string, path: string): Lookup<H> {
    const methods = this.statics.get(path);
    if (methods) {
      const found = methods.get(method);
      if (found !== undefined) return found;
    }
    // A literal path owns that path: its methods are the only ones, whatever a `{field}` pattern would match.
    if (methods) return { kind: 'method', allowed: [...methods.keys()].sort() };
    const allowed = new Set<string>();
    if (this.patterns.length > 0) {
      const parts = path.split('/');
      for (const p of this.patterns) {
        const params = matchSegments(p, parts);
        if (!params) continue;
        const h = p.methods.get(method);
        if (h !== undefined) return { kind: 'found', match: { handler: h, params } };
        for (const m of p.methods.keys()) allowed.add(m);
      }
    }
    if (allowed.size > 0) return { kind: 'method', allowed: [...allowed].sort() };
    return { kind: 'none' };
  }

  /** The methods a path answers (for OPTIONS and CORS preflights). */
  methodsOf(path: string): string[] {
    const r = this.lookup('\u0000', path);
    return r.kind === 'method' ? r.allowed : [];
  }
}

function matchSegments<H>(p: Pattern<H>, parts: string[]): Record<string, string> | undefined {
  if (parts.length !== p.segments.length) return undefined;
  const params: Record<string, string> = {};
  let n = 0;
  for (let i = 0; i < parts.length; i++) {
    const seg = p.segments[i];
    const part = parts[i]!;
    if (seg === null) {
      if (part === '') return undefined;
      params[p.names[n++]!] = part;
    } else if (seg !== part) return undefined;
  }
  return params;
}
