import { describe, expect, it } from 'vitest';
import { TPM_ALG, TPM_ECC } from '../tpm/marshal/constants.js';
import {
  marshalTpm2bPublic,
  type EccPublic,
  type ObjectAttributes,
  type RsaPublic,
} from '../tpm/marshal/public.js';
import { AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048, withUnique } from '../tpm/templates.js';
import { checkAkPublic, parseAkPublic } from './ak.js';
import { thrownCode } from '../shared/testing/refusal.js';

const ecc: EccPublic = withUnique(AK_TEMPLATE_ECC_P256, {
  x: Buffer.alloc(32, 1),
  y: Buffer.alloc(32, 2),
});
const rsa: RsaPublic = withUnique(AK_TEMPLATE_RSA2048, Buffer.alloc(256, 0xc1));

function attrs(p: EccPublic, change: Partial<ObjectAttributes>): EccPublic {
  return { ...p, objectAttributes: { ...p.objectAttributes, ...change } };
}

describe('AK checks', () => {
  it('accepts the ECC P-256 and RSA-2048 AK templates', () => {
    expect(checkAkPublic(ecc)).toBe(ecc);
    expect(checkAkPublic(rsa)).toBe(rsa);
    expect(parseAkPublic(marshalTpm2bPublic(ecc)).type).toBe(TPM_ALG.ECC);
  });

  it.each([
    [{ restricted: false }, 'ak_not_restricted'],
    [{ sign: false }, 'ak_not_signing'],
    [{ decrypt: true }, 'ak_decrypt_set'],
    [{ fixedTPM: false }, 'ak_not_fixed_tpm'],
    [{ fixedParent: false }, 'ak_not_fixed_parent'],
    [{ sensitiveDataOrigin: false }, 'ak_not_sensitive_data_origin'],
  ] as const)('refuses attributes %o with %s', (change, code) => {
    expect(thrownCode(() => checkAkPublic(attrs(ecc, change)))).toBe(code);
  });

  it('refuses a SHA-1 name algorithm', () => {
    expect(thrownCode(() => checkAkPublic({ ...ecc, nameAlg: TPM_ALG.SHA1 }))).toBe(
      'ak_name_alg_weak',
    );
  });

  it('refuses RSA below 2048 bits and curves other than P-256/P-384', () => {
    const small: RsaPublic = {
      ...rsa,
      parameters: { ...rsa.parameters, keyBits: 1024 },
      unique: Buffer.alloc(128, 1),
    };
    expect(thrownCode(() => checkAkPublic(small))).toBe('ak_key_unsupported');
    const p521: EccPublic = {
      ...ecc,
      parameters: { ...ecc.parameters, curveId: TPM_ECC.NIST_P521 },
      unique: { x: Buffer.alloc(66, 1), y: Buffer.alloc(66, 1) },
    };
    expect(thrownCode(() => checkAkPublic(p521))).toBe('ak_key_unsupported');
  });

  it('refuses a signing scheme that is not fixed to ECDSA/RSASSA/RSAPSS with SHA-256+', () => {
    const none: EccPublic = {
      ...ecc,
      parameters: { ...ecc.parameters, scheme: { scheme: TPM_ALG.NULL } },
    };
    expect(thrownCode(() => checkAkPublic(none))).toBe('ak_scheme_unsupported');
    const sha1: RsaPublic = {
      ...rsa,
      parameters: { ...rsa.parameters, scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA1 } },
    };
    expect(thrownCode(() => checkAkPublic(sha1))).toBe('ak_scheme_unsupported');
  });

  it('refuses bytes that are not a TPM2B_PUBLIC', () => {
    expect(thrownCode(() => parseAkPublic(Buffer.from('0004000100', 'hex')))).toBe(
      'ak_public_invalid',
    );
  });
});
