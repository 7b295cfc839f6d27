/** The model catalogue: GGUF files in the models dir plus those configured (`--model path` or `id=path`), by id. */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { TabAgentError } from '../../protocol/errors.js';

export interface CatalogEntry {
  id: string;
  path: string;
}

/** Model id = file name without `.gguf`. */
export function modelIdOf(file: string): string {
  return path.basename(file).replace(/\.gguf$/i, '');
}

/**
 * `--model` / `models` entries: `path/to/x.gguf` (id x), `myid=path/to/x.gguf` (id myid), or a bare id that names a
 * file of the models dir (preloaded, not added).
 */
export function parseModelSpec(spec: string): { id: string; path?: string } {
  const eq = spec.indexOf('=');
  if (eq > 0 && !spec.slice(0, eq).includes(path.sep)) return { id: spec.slice(0, eq), path: path.resolve(spec.slice(eq + 1)) };
  if (spec.includes('/') || spec.includes(path.sep) || /\.gguf$/i.test(spec)) return { id: modelIdOf(spec), path: path.resolve(spec) };
  return { id: spec };
}

export class ModelCatalog {
  constructor(
    private readonly modelsDir: string,
    private readonly specs: readonly string[],
  ) {}

  /** Rescanned on every call: a file dropped into the models dir is listed without a restart. Configured entries win. */
  list(): CatalogEntry[] {
    const byId = new Map<string, string>();
    let files: string[] = [];
    try {
      files = readdirSync(this.modelsDir).filter((f) => /\.gguf$/i.test(f));
    } catch {
      // a missing models dir just means no models there
    }
    for (const f of files.sort()) {
      const full = path.join(this.modelsDir, f);
      if (isFile(full)) byId.set(modelIdOf(f), full);
    }
    for (const spec of this.specs) {
      const s = parseModelSpec(spec);
      if (s.path) byId.set(s.id, s.path);
    }
    return [...byId].map(([id, p]) => ({ id, path: p })).sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The entry of an id, or MODEL_NOT_FOUND naming the ones there are. */
  resolve(id: string): CatalogEntry {
    const all = this.list();
    const hit = all.find((e) => e.id === id);
    if (hit) return hit;
    const available = all.map((e) => e.id);
    throw new TabAgentError(
      'MODEL_NOT_FOUND',
      `model '${id}' not found; available: ${available.length ? available.join(', ') : `none (put .gguf files in ${this.modelsDir} or pass --model PATH)`}`,
      { model: id, available },
    );
  }

  /** Ids to load at start-up: every configured entry. */
  preload(): string[] {
    return this.specs.map((s) => parseModelSpec(s).id);
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
