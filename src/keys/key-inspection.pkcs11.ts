/**
 * Key inspection of the PKCS#11 adapter: find a key pair by CKA_ID, refuse a private key
 * that could leave the token, read the public key and prove that the two are one pair
 * before either is trusted; and the one template a signing key pair is generated with.
 * Synchronous PKCS#11 calls on a session the caller holds.
 */
import { createHash, randomBytes, verify as cryptoVerify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { DomainLogger } from '../shared/log.js';
import { HsmKeyMissingError, HsmKeyUnsafeError } from './errors.js';
import { publicKeyObject, sameJwk } from './jwk.js';
import type { HsmKey, KeyAlgorithm, PublicJwk } from './signer.port.js';

// PKCS#11 3.0 values that pkcs11js 2.1.7 does not define.
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;

// DER OIDs for CKA_EC_PARAMS: prime256v1 and id-Ed25519.
export const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
export const ED25519_PARAMS = Buffer.from('06032b6570', 'hex');

export type Handle = Buffer;

/**
 * Generate a signing key pair on the token with `common` (CKA_TOKEN, CKA_LABEL, perhaps
 * CKA_ID) on both halves: the public half public and verify-only, the private half private,
 * sensitive, never extractable and not for derivation (what inspection refuses otherwise).
 */
export function generateSigningKeyPair(
  p: pkcs11js.PKCS11,
  session: Handle,
  keyGen: number,
  ecParams: Buffer,
  common: pkcs11js.Template,
): void {
  p.C_GenerateKeyPair(
    session,
    { mechanism: keyGen },
    [
      ...common,
      { type: pkcs11js.CKA_EC_PARAMS, value: ecParams },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
    ],
    [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ],
  );
}

function bool(buf: Buffer | undefined): boolean | undefined {
  if (buf === undefined || buf.length === 0) return undefined;
  return buf.some((b) => b !== 0);
}

function ulong(buf: Buffer | undefined): number | undefined {
  if (buf === undefined) return undefined;
  if (buf.length === 8) return Number(buf.readBigUInt64LE(0));
  if (buf.length === 4) return buf.readUInt32LE(0);
  return undefined;
}

/** CKA_EC_POINT is a DER OCTET STRING around the point; some modules return it bare. */
function ecPointBytes(buf: Buffer, expectedLength: number): Buffer {
  if (buf.length === expectedLength) return buf;
  if (buf.length === expectedLength + 2 && buf[0] === 0x04 && buf[1] === expectedLength)
    return buf.subarray(2);
  if (
    buf.length === expectedLength + 3 &&
    buf[0] === 0x04 &&
    buf[1] === 0x81 &&
    buf[2] === expectedLength
  ) {
    return buf.subarray(3);
  }
  throw new HsmKeyUnsafeError('the public key on the token has an unexpected encoding', {
    details: { length: buf.length },
  });
}

function toJwk(alg: KeyAlgorithm, point: Buffer): PublicJwk {
  if (alg === 'ES256') {
    const raw = ecPointBytes(point, 65);
    if (raw[0] !== 0x04)
      throw new HsmKeyUnsafeError('the P-256 public key is not an uncompressed point');
    return {
      kty: 'EC',
      crv: 'P-256',
      x: raw.subarray(1, 33).toString('base64url'),
      y: raw.subarray(33, 65).toString('base64url'),
    };
  }
  return { kty: 'OKP', crv: 'Ed25519', x: ecPointBytes(point, 32).toString('base64url') };
}

export function mechanism(alg: KeyAlgorithm): pkcs11js.Mechanism {
  return { mechanism: alg === 'ES256' ? pkcs11js.CKM_ECDSA : CKM_EDDSA };
}

function signInput(alg: KeyAlgorithm, data: Uint8Array): Buffer {
  return alg === 'ES256' ? createHash('sha256').update(data).digest() : Buffer.from(data);
}

/** Check a signature made by the token against the pinned public key (node:crypto). */
function signatureVerifies(alg: KeyAlgorithm, jwk: PublicJwk, data: Buffer, sig: Buffer): boolean {
  const key = publicKeyObject(jwk);
  return alg === 'ES256'
    ? cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
    : cryptoVerify(null, data, key, sig);
}

export function findObjects(
  p: pkcs11js.PKCS11,
  session: Handle,
  hsmId: string,
  cls: number | undefined,
): Handle[] {
  const template: pkcs11js.Template = [{ type: pkcs11js.CKA_ID, value: Buffer.from(hsmId, 'hex') }];
  if (cls !== undefined) template.push({ type: pkcs11js.CKA_CLASS, value: cls });
  p.C_FindObjectsInit(session, template);
  try {
    return p.C_FindObjects(session, 8);
  } finally {
    p.C_FindObjectsFinal(session);
  }
}

function findOne(
  p: pkcs11js.PKCS11,
  session: Handle,
  hsmId: string,
  cls: number,
  what: string,
): Handle {
  const found = findObjects(p, session, hsmId, cls);
  const h = found[0];
  if (h === undefined)
    throw new HsmKeyMissingError(`the HSM has no ${what} with this id`, { details: { hsmId } });
  // Two objects under one id: we cannot tell which one the store means.
  if (found.length > 1)
    throw new HsmKeyUnsafeError(`the HSM has more than one ${what} with this id`, {
      details: { hsmId },
    });
  return h;
}

/**
 * Check the private key's protection, read the public key, prove they are one pair, and
 * that the public key is still `known` (the one pinned when the key was first loaded).
 */
export function inspectKey(
  p: pkcs11js.PKCS11,
  session: Handle,
  hsmId: string,
  alg: KeyAlgorithm,
  known: PublicJwk | undefined,
  logger: DomainLogger,
): { readonly key: HsmKey; readonly priv: Handle } {
  const priv = findOne(p, session, hsmId, pkcs11js.CKO_PRIVATE_KEY, 'private key');
  const pub = findOne(p, session, hsmId, pkcs11js.CKO_PUBLIC_KEY, 'public key');
  const attrs = p.C_GetAttributeValue(session, priv, [
    { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE },
    { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
    { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
    { type: pkcs11js.CKA_TOKEN },
    { type: pkcs11js.CKA_KEY_TYPE },
    { type: pkcs11js.CKA_LABEL },
  ]);
  const value = (type: number): Buffer | undefined => {
    const v = attrs.find((a) => a.type === type)?.value;
    return Buffer.isBuffer(v) ? v : undefined;
  };
  const failures: string[] = [];
  if (bool(value(pkcs11js.CKA_SENSITIVE)) !== true) failures.push('CKA_SENSITIVE is not true');
  if (bool(value(pkcs11js.CKA_EXTRACTABLE)) !== false)
    failures.push('CKA_EXTRACTABLE is not false');
  if (bool(value(pkcs11js.CKA_NEVER_EXTRACTABLE)) !== true)
    failures.push('CKA_NEVER_EXTRACTABLE is not true');
  if (bool(value(pkcs11js.CKA_ALWAYS_SENSITIVE)) !== true)
    failures.push('CKA_ALWAYS_SENSITIVE is not true');
  if (bool(value(pkcs11js.CKA_TOKEN)) !== true) failures.push('CKA_TOKEN is not true');
  const keyType = ulong(value(pkcs11js.CKA_KEY_TYPE));
  if (keyType !== (alg === 'ES256' ? pkcs11js.CKK_EC : CKK_EC_EDWARDS))
    failures.push(`CKA_KEY_TYPE is not the ${alg} type`);
  if (failures.length > 0) {
    logger.error({ hsmId, failures }, 'REFUSING an HSM key that could leave the HSM');
    throw new HsmKeyUnsafeError(`HSM key ${hsmId} is refused: ${failures.join('; ')}`, {
      details: { hsmId, failures },
    });
  }
  const [point] = p.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_EC_POINT }]);
  if (point === undefined || !Buffer.isBuffer(point.value)) {
    throw new HsmKeyMissingError('the public key has no CKA_EC_POINT', { details: { hsmId } });
  }
  const publicJwk = toJwk(alg, point.value);
  if (known !== undefined && !sameJwk(known, publicJwk)) {
    logger.error({ hsmId }, 'REFUSING an HSM key whose public key changed');
    throw new HsmKeyUnsafeError(`HSM key ${hsmId} is not the key that was loaded before`, {
      details: { hsmId },
    });
  }
  // Prove the private object belongs to the public one before trusting either.
  const challenge = randomBytes(32);
  const input = signInput(alg, challenge);
  p.C_SignInit(session, mechanism(alg), priv);
  const sig = p.C_Sign(session, input, Buffer.alloc(64));
  if (!signatureVerifies(alg, publicJwk, challenge, sig)) {
    throw new HsmKeyUnsafeError(`HSM key ${hsmId}: the private key does not match its public key`, {
      details: { hsmId },
    });
  }
  const labelBuf = value(pkcs11js.CKA_LABEL);
  const label = labelBuf === undefined ? '' : labelBuf.toString('utf8');
  return { key: { hsmId, label, alg, publicJwk }, priv };
}
