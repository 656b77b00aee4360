import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { errorCode, fixture } from '../../../test/marshal/support.js';
import { TPM_ALG, TPM_ECC } from './constants.js';
import { publicToJwk, publicToKeyObject } from './keys.js';
import {
  objectAttributes,
  unmarshalTpm2bPublic,
  type EccPublic,
  type RsaPublic,
} from './public.js';

const eccAk = unmarshalTpm2bPublic(fixture('ak-ecc.pub')) as EccPublic;
const rsaAk = unmarshalTpm2bPublic(fixture('ak-rsa.pub')) as RsaPublic;

function eccPublicFrom(key: KeyObject, curveId: number): EccPublic {
  const jwk = key.export({ format: 'jwk' });
  return {
    ...eccAk,
    parameters: { ...eccAk.parameters, curveId },
    unique: { x: Buffer.from(jwk.x ?? '', 'base64url'), y: Buffer.from(jwk.y ?? '', 'base64url') },
  };
}

describe('public areas as JWK and KeyObject', () => {
  it('converts the captured AKs and EKs', () => {
    expect(publicToJwk(eccAk)).toMatchObject({ kty: 'EC', crv: 'P-256' });
    const rsa = publicToJwk(rsaAk);
    expect(rsa).toMatchObject({ kty: 'RSA', e: 'AQAB' });
    if (rsa.kty !== 'RSA') return;
    expect(Buffer.from(rsa.n, 'base64url').equals(Buffer.from(rsaAk.unique))).toBe(true);
    expect(publicToKeyObject(rsaAk).asymmetricKeyDetails).toMatchObject({ modulusLength: 2048 });
    expect(
      publicToKeyObject(unmarshalTpm2bPublic(fixture('ek-ecc384.pub'))).asymmetricKeyDetails,
    ).toEqual({
      namedCurve: 'secp384r1',
    });
  });

  it('gives the same key node:crypto has for P-256, P-384 and P-521', () => {
    for (const [curve, id] of [
      ['prime256v1', TPM_ECC.NIST_P256],
      ['secp384r1', TPM_ECC.NIST_P384],
      ['secp521r1', TPM_ECC.NIST_P521],
    ] as const) {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      expect(publicToKeyObject(eccPublicFrom(publicKey, id)).equals(publicKey)).toBe(true);
    }
  });

  it('zero-pads ECC coordinates that a TPM gives without leading zeros', () => {
    let key: KeyObject | undefined;
    for (let i = 0; i < 5000 && key === undefined; i++) {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      if (Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url')[0] === 0)
        key = publicKey;
    }
    if (key === undefined) throw new Error('no key with a leading zero byte found');
    const full = eccPublicFrom(key, TPM_ECC.NIST_P256);
    const stripped: EccPublic = {
      ...full,
      unique: { x: full.unique.x.subarray(1), y: full.unique.y },
    };
    const jwk = publicToJwk(stripped);
    expect(jwk).toEqual(key.export({ format: 'jwk' }));
    expect(publicToKeyObject(stripped).equals(key)).toBe(true);
  });

  it('uses 65537 for exponent 0 and encodes other exponents minimally', () => {
    expect(
      publicToJwk({ ...rsaAk, parameters: { ...rsaAk.parameters, exponent: 3 } }),
    ).toMatchObject({ e: 'Aw' });
    expect(
      publicToJwk({ ...rsaAk, parameters: { ...rsaAk.parameters, exponent: 65537 } }),
    ).toMatchObject({
      e: 'AQAB',
    });
    const pem = publicToKeyObject(rsaAk).export({ format: 'pem', type: 'spki' });
    expect(createPublicKey(pem).asymmetricKeyDetails?.publicExponent).toBe(65537n);
  });

  it('refuses keys that are not RSA or NIST-curve ECC', () => {
    const keyed = {
      type: TPM_ALG.KEYEDHASH,
      nameAlg: TPM_ALG.SHA256,
      objectAttributes: objectAttributes('sign'),
      authPolicy: Buffer.alloc(0),
      parameters: { scheme: { scheme: TPM_ALG.NULL } },
      unique: Buffer.alloc(32),
    } as const;
    expect(errorCode(() => publicToJwk(keyed))).toBe('tpm_key_unsupported');
    const bn = { ...eccAk, parameters: { ...eccAk.parameters, curveId: TPM_ECC.BN_P256 } };
    expect(errorCode(() => publicToKeyObject(bn))).toBe('tpm_key_unsupported');
  });

  it('refuses malformed key material', () => {
    expect(
      errorCode(() =>
        publicToJwk({ ...eccAk, unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) } }),
      ),
    ).toBe('tpm_key_invalid');
    expect(
      errorCode(() =>
        publicToJwk({ ...eccAk, unique: { x: Buffer.alloc(33, 1), y: eccAk.unique.y } }),
      ),
    ).toBe('tpm_key_invalid');
    const offCurve = Buffer.from(eccAk.unique.y);
    offCurve[31] = (offCurve[31] ?? 0) ^ 1;
    expect(
      errorCode(() => publicToKeyObject({ ...eccAk, unique: { x: eccAk.unique.x, y: offCurve } })),
    ).toBe('tpm_key_invalid');
    expect(errorCode(() => publicToJwk({ ...rsaAk, unique: Buffer.alloc(0) }))).toBe(
      'tpm_key_invalid',
    );
    expect(errorCode(() => publicToJwk({ ...rsaAk, unique: rsaAk.unique.subarray(1) }))).toBe(
      'tpm_key_invalid',
    );
    expect(
      errorCode(() => publicToJwk({ ...rsaAk, parameters: { ...rsaAk.parameters, exponent: 4 } })),
    ).toBe('tpm_key_invalid');
  });
});
