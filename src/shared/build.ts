/**
 * The running build, for grantor_build_info: the package version (read once from the
 * package.json beside the sources or the built tree) and the Node.js version.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageVersion(): string {
  // src/shared/ in a checkout, dist/src/shared/ when built: the first package.json of
  // this package up the tree.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as unknown;
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'grantor') {
        return 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : 'unknown';
      }
    } catch {
      // not here: one level up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const BUILD: { readonly version: string; readonly node: string } = {
  version: packageVersion(),
  node: process.versions.node,
};
