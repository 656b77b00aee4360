/**
 * The TPM owner hierarchy's authorisation value, kept in a file only the appliance's
 * operator can read (GRANTOR_TPM_OWNER_AUTH_FILE). Only provisioning uses it (defining
 * the audit anchor's NV indices); the running appliance writes the anchor through its
 * write policy and needs no owner authorisation. The value never reaches a log, an error
 * or the audit log: errors name the file and the problem, never the content.
 *
 * Format: the value as lowercase hex on one line (tpm2-tools takes it as `-P hex:$(cat FILE)`).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { ConfigError } from '../shared/errors.js';
import { writeFileOnce } from '../shared/write-once.js';
import { TPM_RC, TpmError } from './errors.js';
import type { TpmPort } from './tpm.port.js';

const KEY = 'GRANTOR_TPM_OWNER_AUTH_FILE';
/** SHA-256 digest size: the largest auth value every TPM with a SHA-256 bank takes. */
export const OWNER_AUTH_BYTES = 32;
const HEX = /^(?:[0-9a-f]{2}){1,64}$/;

/**
 * Reads the owner authorisation. Refuses a file that a group or others can read or write
 * (the owner auth lets its holder undefine the audit anchor) and anything but hex.
 */
export async function readOwnerAuth(path: string): Promise<Buffer> {
  let mode: number;
  let text: string;
  try {
    mode = (await stat(path)).mode;
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(KEY, `cannot read ${path} (${code})`);
  }
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      KEY,
      `${path} is accessible to its group or others (mode ${(mode & 0o777).toString(8)}): chmod 0400 it`,
    );
  }
  const hex = text.trim();
  if (!HEX.test(hex)) throw new ConfigError(KEY, `${path} does not hold a hex value`);
  return Buffer.from(hex, 'hex');
}

/**
 * A new random owner authorisation, written to `path` durably and atomically with mode
 * 0400 (temporary file, fsync, hard link: never replaces an existing file), before the
 * TPM is told: a value the TPM holds is never lost with the file.
 */
export async function createOwnerAuthFile(path: string): Promise<Buffer> {
  const value = randomBytes(OWNER_AUTH_BYTES);
  try {
    await writeFileOnce(path, `${value.toString('hex')}\n`, 0o400);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ConfigError('--set-owner-auth', `${path} exists: it is never overwritten`);
    }
    throw e;
  }
  return value;
}

/**
 * `grantor provision --set-owner-auth FILE`: when the owner authorisation is empty, sets a
 * random one (TPM2_HierarchyChangeAuth) and keeps it in FILE (createOwnerAuthFile). Refuses
 * when the owner authorisation is already set (nothing changes) or FILE exists.
 */
export async function setRandomOwnerAuth(tpm: TpmPort, path: string): Promise<void> {
  const empty = new Uint8Array(0);
  // Empty to empty: succeeds only while the owner authorisation is empty, changes nothing.
  try {
    await tpm.hierarchyChangeAuth('owner', empty, { hierarchyAuth: empty });
  } catch (e) {
    if (e instanceof TpmError && (e.is(TPM_RC.BAD_AUTH) || e.is(TPM_RC.AUTH_FAIL))) {
      throw new ConfigError(
        '--set-owner-auth',
        'the TPM owner authorisation is already set: not changed (give it with GRANTOR_TPM_OWNER_AUTH_FILE)',
      );
    }
    throw e;
  }
  const value = await createOwnerAuthFile(path);
  try {
    await tpm.hierarchyChangeAuth('owner', value, { hierarchyAuth: empty });
  } catch (e) {
    // The TPM kept the empty value: a file naming another one would mislead.
    await rm(path, { force: true });
    throw e;
  } finally {
    value.fill(0);
  }
}
