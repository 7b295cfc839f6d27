/** The package version, read once from package.json (found by walking up from this file, in src/ or dist/). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageJson(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string };
      if (pkg.name === 'tabagent-server') return candidate;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json of tabagent-server not found');
    dir = up;
  }
}

export const packageRoot = path.dirname(findPackageJson());
export const version: string = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
