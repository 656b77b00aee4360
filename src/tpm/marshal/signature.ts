/** TPMT_SIGNATURE (TPM 2.0 Part 2, 11.3.4) for RSASSA, RSAPSS and ECDSA. */
import { TpmMarshalError, marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_ALG, TPM_MAX, isHashAlg, type HashAlgId } from './constants.js';

type Alg = typeof TPM_ALG;

export type TpmtSignature =
  | {
      readonly sigAlg: Alg['RSASSA'] | Alg['RSAPSS'];
      readonly hash: HashAlgId;
      readonly sig: Uint8Array;
    }
  | {
      readonly sigAlg: Alg['ECDSA'];
      readonly hash: HashAlgId;
      readonly r: Uint8Array;
      readonly s: Uint8Array;
    };

export function readTpmtSignature(r: TpmReader): TpmtSignature {
  return r.struct((s) => {
    const algAt = s.offset;
    const sigAlg = s.u16('sigAlg');
    if (sigAlg !== TPM_ALG.RSASSA && sigAlg !== TPM_ALG.RSAPSS && sigAlg !== TPM_ALG.ECDSA) {
      throw s.invalid('sigAlg', `unsupported signature scheme: 0x${sigAlg.toString(16)}`, algAt);
    }
    const hashAt = s.offset;
    const hash = s.u16('signature.hash');
    if (!isHashAlg(hash))
      throw s.invalid('signature.hash', `not a hash algorithm: 0x${hash.toString(16)}`, hashAt);
    if (sigAlg === TPM_ALG.ECDSA) {
      const sigR = s.tpm2b('signature.ecdsa.signatureR', TPM_MAX.ECC_KEY_BYTES);
      const sigS = s.tpm2b('signature.ecdsa.signatureS', TPM_MAX.ECC_KEY_BYTES);
      return { sigAlg, hash, r: sigR, s: sigS };
    }
    return { sigAlg, hash, sig: s.tpm2b('signature.rsa.sig', TPM_MAX.RSA_KEY_BYTES) };
  });
}

/** Parse a complete TPMT_SIGNATURE, as `tpm2_quote -s` writes it. */
export function unmarshalTpmtSignature(bytes: Uint8Array): TpmtSignature {
  return parseAll(bytes, 'TPMT_SIGNATURE', readTpmtSignature);
}

export function writeTpmtSignature(w: TpmWriter, sig: TpmtSignature): void {
  // Only reachable through a cast; never emit a structure we would not parse back.
  const alg: number = sig.sigAlg;
  if (alg !== TPM_ALG.ECDSA && alg !== TPM_ALG.RSASSA && alg !== TPM_ALG.RSAPSS) {
    throw new TpmMarshalError('sigAlg', 'unsupported signature scheme');
  }
  if (!isHashAlg(sig.hash)) throw new TpmMarshalError('hash', 'not a hash algorithm');
  w.u16(sig.sigAlg, 'sigAlg').u16(sig.hash, 'hash');
  if (sig.sigAlg === TPM_ALG.ECDSA) {
    w.tpm2b(sig.r, TPM_MAX.ECC_KEY_BYTES, 'signatureR');
    w.tpm2b(sig.s, TPM_MAX.ECC_KEY_BYTES, 'signatureS');
  } else {
    w.tpm2b(sig.sig, TPM_MAX.RSA_KEY_BYTES, 'sig');
  }
}

export function marshalTpmtSignature(sig: TpmtSignature): Buffer {
  return marshal((w) => {
    writeTpmtSignature(w, sig);
  });
}

/** TPMT_SIG_SCHEME with TPM_ALG_NULL: sign with the key's own scheme. */
export const SIG_SCHEME_NULL: Buffer = Buffer.from([0x00, 0x10]);
