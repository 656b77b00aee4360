/**
 * Temporary folders for one test file, removed after it:
 *
 *   const tmp = tempDirs('grantor-x-');
 *   afterAll(() => tmp.removeAll());
 *   const dir = await tmp.make();
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDirs {
  make(): Promise<string>;
  removeAll(): Promise<void>;
}

export function tempDirs(prefix: string): TempDirs {
  const dirs: string[] = [];
  return {
    make: async () => {
      const dir = await mkdtemp(join(tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
    removeAll: async () => {
      for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
    },
  };
}
