/**
 * TPM names (TPMU_NAME inside a TPM2B_NAME): empty, a 4-byte handle (permanent entities and
 * sessions), or nameAlg (u16) || digest for objects and NV indices.
 */
import { TpmMarshalError, marshal, parseAll } from './buffer.js';
import { hashInfo, type HashAlgId } from './constants.js';

export type TpmName =
  | { readonly kind: 'empty' }
  | { readonly kind: 'handle'; readonly handle: number }
  | { readonly kind: 'digest'; readonly hashAlg: HashAlgId; readonly digest: Uint8Array };

/** Decode the contents of a TPM2B_NAME (without its size prefix). */
export function decodeName(name: Uint8Array): TpmName {
  return parseAll(name, 'TPMU_NAME', (r) => {
    if (r.remaining === 0) return { kind: 'empty' };
    if (r.remaining === 4) return { kind: 'handle', handle: r.u32('handle') };
    const algAt = r.offset;
    const alg = r.u16('hashAlg');
    const info = hashInfo(alg);
    if (info === undefined)
      throw r.invalid('hashAlg', `not a hash algorithm: 0x${alg.toString(16)}`, algAt);
    if (r.remaining !== info.size) throw r.invalid('digest', `digest is not ${info.size} bytes`);
    return { kind: 'digest', hashAlg: info.id, digest: r.rest('digest') };
  });
}

export function encodeName(name: TpmName): Buffer {
  return marshal((w) => {
    switch (name.kind) {
      case 'empty':
        return;
      case 'handle':
        w.u32(name.handle, 'handle');
        return;
      case 'digest': {
        const info = hashInfo(name.hashAlg);
        if (info === undefined || name.digest.length !== info.size) {
          throw new TpmMarshalError('digest', 'digest does not match its hash algorithm');
        }
        w.u16(name.hashAlg, 'hashAlg').bytes(name.digest);
        return;
      }
    }
  });
}
