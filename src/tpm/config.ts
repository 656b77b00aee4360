/**
 * The TPM's configuration section (GRANTOR_TPM_*): how to reach it and the owner
 * authorisation file. Composed into AppConfig by src/shared/config.ts.
 */
import { resolve } from 'node:path';
import { optional, required, type FileKeys, type Source } from '../shared/config-parse.js';
import { ConfigError } from '../shared/errors.js';

export interface TpmConfig {
  /** tpm2-tss TCTI: `swtpm:host=H,port=P` (simulator) or `device:/dev/tpmrm0`. */
  readonly tcti: string;
  /**
   * The owner hierarchy's authorisation (GRANTOR_TPM_OWNER_AUTH_FILE, hex, mode 0400;
   * src/tpm/owner-auth.ts): read by provisioning only. Absent: empty owner auth.
   */
  readonly ownerAuthFile?: string;
}

export const TPM_FILE_KEYS: FileKeys = {
  tpmTcti: 'GRANTOR_TPM_TCTI',
  tpmOwnerAuthFile: 'GRANTOR_TPM_OWNER_AUTH_FILE',
};

export function parseTcti(key: string, value: string): string {
  if (/^swtpm:host=[^,]+,port=\d{1,5}$/.test(value) || /^device:\/\S+$/.test(value)) return value;
  // The resource manager daemon (tpm2-abrmd), shared with tpm2-pkcs11 on one TPM.
  if (/^tabrmd(:[A-Za-z0-9_.=,-]*)?$/.test(value)) return value;
  throw new ConfigError(
    key,
    `expected "swtpm:host=H,port=P" or "device:/dev/tpmrm0", got "${value}"`,
  );
}

/** GRANTOR_TPM_OWNER_AUTH_FILE, resolved; read (and its mode checked) when used. */
function ownerAuthFile(src: Source, cwd: string): { ownerAuthFile?: string } {
  const path = optional(src, 'GRANTOR_TPM_OWNER_AUTH_FILE', '');
  return path === '' ? {} : { ownerAuthFile: resolve(cwd, path) };
}

export function tpmConfig(src: Source, cwd: string): TpmConfig {
  return {
    tcti: parseTcti('GRANTOR_TPM_TCTI', required(src, 'GRANTOR_TPM_TCTI')),
    ...ownerAuthFile(src, cwd),
  };
}
