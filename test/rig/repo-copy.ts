/**
 * A copy of the repository for a test that runs one of its scripts (./scripts/start,
 * ./scripts/demo): the files git tracks, node_modules linked, the built addon copied after
 * the sources so that it is fresh. The script builds the TypeScript into the copy's dist/,
 * and neither that build nor a rebuild of the addon can touch the tree other tests run from.
 */
import { copyFile, cp, mkdir, readFile, symlink } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './sim.js';

const run = promisify(execFile);

/** The repository's files in `tree`, node_modules linked, the built addon copied last. */
export async function copyRepository(tree: string): Promise<void> {
  const stamp = join(repoRoot, 'node_modules/.grantor-lock-stamp');
  const [lock, stamped] = await Promise.all([
    readFile(join(repoRoot, 'package-lock.json'), 'utf8'),
    readFile(stamp, 'utf8').catch(() => ''),
  ]);
  // Otherwise the script would run npm ci in the copy (through the link).
  if (lock !== stamped) throw new Error('node_modules does not match package-lock.json: npm ci');
  const { stdout } = await run('git', ['ls-files', '-z'], {
    cwd: repoRoot,
    maxBuffer: 64 * 1024 * 1024,
  });
  for (const file of stdout.split('\0').filter((f) => f !== '')) {
    await mkdir(dirname(join(tree, file)), { recursive: true });
    await copyFile(join(repoRoot, file), join(tree, file)).catch((e: unknown) => {
      // A file deleted in the working tree and not yet committed.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    });
  }
  await symlink(join(repoRoot, 'node_modules'), join(tree, 'node_modules'));
  await cp(join(repoRoot, 'native/build'), join(tree, 'native/build'), { recursive: true });
}
