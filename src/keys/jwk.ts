/** Public-key encodings shared by the adapter and the service (no HSM access here). */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import type { PublicJwk } from './signer.port.js';

/** RFC 7638 thumbprint (SHA-256, base64url): the kid of a key. */
export function thumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

export function publicKeyObject(jwk: PublicJwk): KeyObject {
  return createPublicKey({ key: { ...jwk }, format: 'jwk' });
}

/** The 32 raw bytes of an Ed25519 public key. */
export function ed25519Raw(jwk: PublicJwk): Uint8Array {
  if (jwk.kty !== 'OKP') throw new TypeError('not an Ed25519 key');
  return new Uint8Array(Buffer.from(jwk.x, 'base64url'));
}

export function sameJwk(a: PublicJwk, b: PublicJwk): boolean {
  if (a.kty === 'EC' && b.kty === 'EC') return a.x === b.x && a.y === b.y;
  if (a.kty === 'OKP' && b.kty === 'OKP') return a.x === b.x;
  return false;
}
