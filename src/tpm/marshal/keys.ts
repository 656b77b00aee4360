/** Public areas (TPMT_PUBLIC) as node:crypto KeyObjects and JWKs. */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { TpmKeyInvalidError, TpmKeyUnsupportedError } from '../errors.js';
import { TPM_ALG } from './constants.js';
import { ECC_CURVES, type TpmtPublic } from './public.js';

export { TpmKeyInvalidError, TpmKeyUnsupportedError } from '../errors.js';

export const DEFAULT_RSA_EXPONENT = 65537;

export interface RsaJwk {
  readonly kty: 'RSA';
  readonly n: string;
  readonly e: string;
}

export interface EcJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256' | 'P-384' | 'P-521';
  readonly x: string;
  readonly y: string;
}

export type PublicJwk = RsaJwk | EcJwk;

function stripLeadingZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function leftPad(b: Uint8Array, size: number, field: string): Buffer {
  const v = stripLeadingZeros(b);
  if (v.length > size)
    throw new TpmKeyInvalidError(`${field} is longer than the curve's coordinate size`);
  const out = Buffer.alloc(size);
  out.set(v, size - v.length);
  return out;
}

function exponentBytes(e: number): Buffer {
  const v = e === 0 ? DEFAULT_RSA_EXPONENT : e;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return Buffer.from(stripLeadingZeros(b));
}

/** The public key of an RSA or ECC (P-256/P-384/P-521) public area as a JWK. */
export function publicToJwk(pub: TpmtPublic): PublicJwk {
  switch (pub.type) {
    case TPM_ALG.RSA: {
      const n = stripLeadingZeros(pub.unique);
      if (pub.unique.length === 0 || n[0] === 0)
        throw new TpmKeyInvalidError('RSA modulus is empty');
      if (pub.unique.length * 8 !== pub.parameters.keyBits) {
        throw new TpmKeyInvalidError('RSA modulus length does not match keyBits');
      }
      if (pub.parameters.exponent !== 0 && pub.parameters.exponent % 2 === 0) {
        throw new TpmKeyInvalidError('RSA exponent is even');
      }
      return {
        kty: 'RSA',
        n: Buffer.from(pub.unique).toString('base64url'),
        e: exponentBytes(pub.parameters.exponent).toString('base64url'),
      };
    }
    case TPM_ALG.ECC: {
      const curve = (
        ECC_CURVES as Partial<Record<number, (typeof ECC_CURVES)[keyof typeof ECC_CURVES]>>
      )[pub.parameters.curveId];
      if (curve === undefined) {
        throw new TpmKeyUnsupportedError(
          `ECC curve 0x${pub.parameters.curveId.toString(16)} is not supported`,
        );
      }
      if (pub.unique.x.length === 0 || pub.unique.y.length === 0) {
        throw new TpmKeyInvalidError('ECC point is empty');
      }
      return {
        kty: 'EC',
        crv: curve.jwk,
        x: leftPad(pub.unique.x, curve.size, 'x').toString('base64url'),
        y: leftPad(pub.unique.y, curve.size, 'y').toString('base64url'),
      };
    }
    default:
      throw new TpmKeyUnsupportedError(
        'only RSA and ECC public areas carry an asymmetric public key',
      );
  }
}

/** The public key of an RSA or ECC public area as a node:crypto KeyObject. */
export function publicToKeyObject(pub: TpmtPublic): KeyObject {
  const jwk = publicToJwk(pub);
  try {
    return createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch (e) {
    // node refuses e.g. an ECC point that is not on the curve.
    throw new TpmKeyInvalidError('public key rejected by node:crypto', e);
  }
}
