/** The PCR banks measured boot can replay: TPM hash algorithms node:crypto implements. */
import { createHash } from 'node:crypto';
import { hashInfo, hashInfoByName, type HashName } from '../../tpm/marshal/constants.js';

export interface Bank {
  readonly id: number;
  readonly name: HashName;
  readonly size: number;
  readonly node: string;
}

function bank(info: ReturnType<typeof hashInfo>): Bank | undefined {
  if (info === undefined) return undefined;
  // node:crypto (OpenSSL 3) has SM3 under the name "sm3".
  const node = info.node ?? (info.name === 'sm3_256' ? 'sm3' : undefined);
  return node === undefined ? undefined : { id: info.id, name: info.name, size: info.size, node };
}

export function bankById(id: number): Bank | undefined {
  return bank(hashInfo(id));
}

export function bankByName(name: string): Bank | undefined {
  return bank(hashInfoByName(name));
}

/** PCR extend: new = H(old ‖ digest). */
export function extend(b: Bank, pcr: Buffer, digest: Uint8Array): Buffer {
  return createHash(b.node).update(pcr).update(digest).digest();
}
