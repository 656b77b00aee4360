import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fixture } from '../../test/marshal/support.js';
import { TPM_ALG, TPM_CC, TPM_RH } from './marshal/constants.js';
import {
  marshalTpm2bPublic,
  objectName,
  unmarshalTpm2bPublic,
  type TpmtPublic,
} from './marshal/public.js';
import {
  AK_TEMPLATE_ECC_P256,
  AK_TEMPLATE_RSA2048,
  EK_POLICY_A_SHA256,
  EK_POLICY_A_SHA384,
  EK_TEMPLATE_ECC_P256,
  EK_TEMPLATE_ECC_P384,
  EK_TEMPLATE_RSA2048,
  withUnique,
} from './templates.js';

/** PolicySecret(authHandle) with an empty policyRef, from a zero policy digest. */
function policySecret(hash: string, handle: number): Buffer {
  const zero = Buffer.alloc(createHash(hash).digest().length);
  const cc = Buffer.alloc(4);
  cc.writeUInt32BE(TPM_CC.PolicySecret);
  const name = Buffer.alloc(4);
  name.writeUInt32BE(handle);
  const first = createHash(hash)
    .update(Buffer.concat([zero, cc, name]))
    .digest();
  return createHash(hash).update(first).digest();
}

const cases: [string, TpmtPublic, string][] = [
  ['EK RSA-2048 (L-1) at 0x81010001', EK_TEMPLATE_RSA2048, 'ek-rsa2048'],
  ['EK ECC P-256 (L-2) from tpm2_createek', EK_TEMPLATE_ECC_P256, 'ek-ecc256'],
  ['EK ECC P-384 (H-3) at 0x81010016', EK_TEMPLATE_ECC_P384, 'ek-ecc384'],
  ['AK ECC P-256 from tpm2_createak', AK_TEMPLATE_ECC_P256, 'ak-ecc'],
  ['AK RSA-2048 from tpm2_createak', AK_TEMPLATE_RSA2048, 'ak-rsa'],
];

describe('key templates', () => {
  it.each(cases)(
    '%s equals the captured public area except unique, and names match',
    (_n, template, file) => {
      const captured = unmarshalTpm2bPublic(fixture(`${file}.pub`));
      expect({ ...captured, unique: undefined }).toEqual({ ...template, unique: undefined });
      const named = withUnique(template, captured.unique);
      expect(objectName(named).equals(fixture(`${file}.name`))).toBe(true);
    },
  );

  it('the low-range EK templates carry a zero unique of the key size', () => {
    expect(EK_TEMPLATE_RSA2048.unique).toEqual(Buffer.alloc(256));
    expect(EK_TEMPLATE_ECC_P256.unique).toEqual({ x: Buffer.alloc(32), y: Buffer.alloc(32) });
    expect(marshalTpm2bPublic(EK_TEMPLATE_RSA2048).length).toBe(2 + 0x13a);
  });

  it('EK policies are PolicySecret(TPM_RH_ENDORSEMENT) digests', () => {
    expect(policySecret('sha256', TPM_RH.ENDORSEMENT).equals(EK_POLICY_A_SHA256)).toBe(true);
    expect(policySecret('sha384', TPM_RH.ENDORSEMENT).equals(EK_POLICY_A_SHA384)).toBe(true);
  });

  it('AK templates are restricted signing keys bound to the TPM', () => {
    for (const t of [AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048]) {
      expect(t.objectAttributes).toMatchObject({
        fixedTPM: true,
        fixedParent: true,
        sensitiveDataOrigin: true,
        userWithAuth: true,
        restricted: true,
        sign: true,
        decrypt: false,
      });
      expect(t.nameAlg).toBe(TPM_ALG.SHA256);
    }
  });
});
