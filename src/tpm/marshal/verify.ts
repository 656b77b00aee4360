/**
 * Verify a TPMT_SIGNATURE over a message with a TPMT_PUBLIC using node:crypto, the way a
 * TPM signs: ECDSA (r, s), RSASSA-PKCS1-v1_5, and RSASSA-PSS with salt length = hash length.
 */
import { constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import {
  TpmSignatureHashMismatchError,
  TpmSignatureInvalidError,
  TpmSignatureOutOfRangeError,
  TpmSignatureSchemeMismatchError,
} from '../errors.js';
import { TPM_ALG, TPM_ECC, hashInfo } from './constants.js';
import { publicToKeyObject } from './keys.js';
import type { TpmtPublic } from './public.js';
import type { TpmtSignature } from './signature.js';

export {
  TpmSignatureHashMismatchError,
  TpmSignatureInvalidError,
  TpmSignatureOutOfRangeError,
  TpmSignatureSchemeMismatchError,
} from '../errors.js';

/**
 * KeyObjects by public area (parsed areas are immutable): building one costs more than the
 * verification itself, and a verifier checks many quotes of the same AK.
 */
const keyObjects = new WeakMap<TpmtPublic, KeyObject>();

function keyObjectOf(pub: TpmtPublic): KeyObject {
  let key = keyObjects.get(pub);
  if (key === undefined) {
    key = publicToKeyObject(pub);
    keyObjects.set(pub, key);
  }
  return key;
}

/** Curve orders n of the curves we verify on. */
const CURVE_ORDER: Partial<Record<number, { n: bigint; size: number }>> = {
  [TPM_ECC.NIST_P256]: {
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    size: 32,
  },
  [TPM_ECC.NIST_P384]: {
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    size: 48,
  },
  [TPM_ECC.NIST_P521]: {
    n: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
    size: 66,
  },
};

function toBigInt(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt(`0x${Buffer.from(b).toString('hex')}`);
}

function toFixed(v: bigint, size: number): Buffer {
  return Buffer.from(v.toString(16).padStart(size * 2, '0'), 'hex');
}

function derLength(n: number): Buffer {
  return n < 0x80
    ? Buffer.of(n)
    : n < 0x100
      ? Buffer.of(0x81, n)
      : Buffer.of(0x82, n >> 8, n & 0xff);
}

function derInteger(v: bigint): Buffer {
  const hex = v.toString(16);
  let body = Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex');
  // DER INTEGERs are signed: a leading 1 bit needs a 0x00 byte in front.
  if (((body[0] ?? 0) & 0x80) !== 0) body = Buffer.concat([Buffer.of(0), body]);
  return Buffer.concat([Buffer.of(0x02), derLength(body.length), body]);
}

export type EcdsaSignature = Extract<TpmtSignature, { sigAlg: typeof TPM_ALG.ECDSA }>;

/** An ECDSA TPMT_SIGNATURE as IEEE P1363 r || s, each left-padded to the curve size. */
export function ecdsaSignatureToP1363(signature: EcdsaSignature, curveId: number): Buffer {
  const curve = CURVE_ORDER[curveId];
  if (curve === undefined) throw new TpmSignatureSchemeMismatchError('curve not supported');
  const r = toBigInt(signature.r);
  const s = toBigInt(signature.s);
  if (r < 1n || r >= curve.n || s < 1n || s >= curve.n) {
    throw new TpmSignatureOutOfRangeError('ECDSA r or s outside [1, n-1]');
  }
  return Buffer.concat([toFixed(r, curve.size), toFixed(s, curve.size)]);
}

/** An ECDSA TPMT_SIGNATURE as a DER Ecdsa-Sig-Value (SEQUENCE of INTEGER r, INTEGER s). */
export function ecdsaSignatureToDer(signature: EcdsaSignature, curveId: number): Buffer {
  const p1363 = ecdsaSignatureToP1363(signature, curveId);
  const half = p1363.length / 2;
  const body = Buffer.concat([
    derInteger(toBigInt(p1363.subarray(0, half))),
    derInteger(toBigInt(p1363.subarray(half))),
  ]);
  return Buffer.concat([Buffer.of(0x30), derLength(body.length), body]);
}

/**
 * Check `signature` over `message` (for a quote: the marshalled TPMS_ATTEST bytes) with
 * `pub`. Throws one error class per failure; returns normally only for a valid signature.
 */
export function verifyTpmtSignature(
  pub: TpmtPublic,
  signature: TpmtSignature,
  message: Uint8Array,
): void {
  // The signature scheme must match the key type...
  if (pub.type === TPM_ALG.RSA) {
    if (signature.sigAlg !== TPM_ALG.RSASSA && signature.sigAlg !== TPM_ALG.RSAPSS) {
      throw new TpmSignatureSchemeMismatchError('RSA key, non-RSA signature');
    }
  } else if (pub.type === TPM_ALG.ECC) {
    if (signature.sigAlg !== TPM_ALG.ECDSA)
      throw new TpmSignatureSchemeMismatchError('ECC key, non-ECDSA signature');
  } else {
    throw new TpmSignatureSchemeMismatchError('key cannot sign');
  }
  // ...and a key with a fixed scheme (every restricted signing key) signs only with it.
  const keyScheme = pub.parameters.scheme;
  if (keyScheme.scheme !== TPM_ALG.NULL) {
    if (keyScheme.scheme !== signature.sigAlg) {
      throw new TpmSignatureSchemeMismatchError("signature scheme is not the key's scheme");
    }
    if (!('hashAlg' in keyScheme) || keyScheme.hashAlg !== signature.hash) {
      throw new TpmSignatureHashMismatchError("signature hash is not the key's scheme hash");
    }
  }
  const hash = hashInfo(signature.hash);
  if (hash?.node === undefined)
    throw new TpmSignatureHashMismatchError('hash algorithm not supported');

  const key = keyObjectOf(pub);
  let ok: boolean;
  if (signature.sigAlg === TPM_ALG.ECDSA) {
    if (pub.type !== TPM_ALG.ECC)
      throw new TpmSignatureSchemeMismatchError('ECDSA needs an ECC key');
    // Values outside [1, n-1] are never valid ECDSA signatures.
    const p1363 = ecdsaSignatureToP1363(signature, pub.parameters.curveId);
    ok = cryptoVerify(hash.node, message, { key, dsaEncoding: 'ieee-p1363' }, p1363);
  } else {
    if (pub.type !== TPM_ALG.RSA)
      throw new TpmSignatureSchemeMismatchError('RSA signature needs an RSA key');
    // A TPM's RSA signature is exactly the modulus size and below the modulus.
    if (
      signature.sig.length !== pub.unique.length ||
      toBigInt(signature.sig) >= toBigInt(pub.unique)
    ) {
      throw new TpmSignatureOutOfRangeError('RSA signature is not an integer below the modulus');
    }
    const padding =
      signature.sigAlg === TPM_ALG.RSAPSS
        ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hash.size }
        : { padding: constants.RSA_PKCS1_PADDING };
    ok = cryptoVerify(hash.node, message, { key, ...padding }, signature.sig);
  }
  if (!ok) throw new TpmSignatureInvalidError();
}
