/**
 * Write a file that must survive a crash whole and must never replace another (the anchor
 * pin, the TPM owner authorisation): a temporary file opened exclusively with its final
 * mode, fsync, hard link to the final name (link() refuses an existing target, where
 * rename() would replace it), unlink of the temporary name, fsync of the folder.
 * An existing `path` rejects with the link's EEXIST error, nothing changed.
 */
import { constants } from 'node:fs';
import { link, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function writeFileOnce(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const file = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await file.writeFile(content);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  const dir = await open(dirname(path), constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
