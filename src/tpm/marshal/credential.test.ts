import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectOnlyOwnErrors,
  expectParserContract,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import {
  marshalCredentialFile,
  marshalIdObject,
  marshalTpm2bEncryptedSecret,
  marshalTpm2bIdObject,
  unmarshalCredentialFile,
  unmarshalIdObject,
  unmarshalTpm2bEncryptedSecret,
  unmarshalTpm2bIdObject,
} from './credential.js';

describe('tpm2_makecredential output', () => {
  it.each([
    ['credential-rsa', 32, 256],
    ['credential-ecc384', 48, 2 + 48 + 2 + 48],
  ])(
    '%s round-trips and splits into TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET',
    (name, hmac, secret) => {
      const bytes = fixture(`${name}.blob`);
      const c = unmarshalCredentialFile(bytes);
      expect(marshalCredentialFile(c).equals(bytes)).toBe(true);
      expect(c.encryptedSecret.length).toBe(secret);
      const id = unmarshalIdObject(c.credentialBlob);
      expect(id.integrityHmac.length).toBe(hmac);
      expect(marshalIdObject(id).equals(Buffer.from(c.credentialBlob))).toBe(true);
      // The protocol carries the two TPM2Bs separately, in this order, behind the header.
      const idObject = marshalTpm2bIdObject(c.credentialBlob);
      const encSecret = marshalTpm2bEncryptedSecret(c.encryptedSecret);
      expect(Buffer.concat([bytes.subarray(0, 8), idObject, encSecret]).equals(bytes)).toBe(true);
      expect(unmarshalTpm2bIdObject(idObject)).toEqual(c.credentialBlob);
      expect(unmarshalTpm2bEncryptedSecret(encSecret)).toEqual(c.encryptedSecret);
    },
  );

  it('refuses a wrong magic or version', () => {
    const bytes = fixture('credential-rsa.blob');
    const magic = Buffer.from(bytes);
    magic.writeUInt32BE(0xbadcc0df, 0);
    expect(parseCode(() => unmarshalCredentialFile(magic))).toBe('tpm_parse_invalid');
    const version = Buffer.from(bytes);
    version.writeUInt32BE(2, 4);
    expect(parseCode(() => unmarshalCredentialFile(version))).toBe('tpm_parse_invalid');
  });

  it('refuses oversized sizes', () => {
    const bytes = fixture('credential-rsa.blob');
    const id = Buffer.from(bytes);
    id.writeUInt16BE(133, 8);
    expect(parseCode(() => unmarshalCredentialFile(id))).toBe('tpm_parse_oversized');
    const c = unmarshalCredentialFile(bytes);
    const secret = Buffer.from(bytes);
    secret.writeUInt16BE(513, 8 + 2 + c.credentialBlob.length);
    expect(parseCode(() => unmarshalCredentialFile(secret))).toBe('tpm_parse_oversized');
    expect(
      parseCode(() => unmarshalTpm2bIdObject(Buffer.from('0085' + '00'.repeat(133), 'hex'))),
    ).toBe('tpm_parse_oversized');
    expect(
      parseCode(() => unmarshalTpm2bEncryptedSecret(Buffer.from('0201' + '00'.repeat(513), 'hex'))),
    ).toBe('tpm_parse_oversized');
    expect(parseCode(() => unmarshalIdObject(Buffer.from('0041' + '00'.repeat(70), 'hex')))).toBe(
      'tpm_parse_oversized',
    );
    expect(parseCode(() => unmarshalTpm2bIdObject(Buffer.from('0002aabbcc', 'hex')))).toBe(
      'tpm_parse_trailing',
    );
  });

  it('refuses to marshal oversized blobs', () => {
    expect(errorCode(() => marshalTpm2bIdObject(Buffer.alloc(133)))).toBe('tpm_marshal_invalid');
    expect(errorCode(() => marshalTpm2bEncryptedSecret(Buffer.alloc(513)))).toBe(
      'tpm_marshal_invalid',
    );
  });

  it('refuses truncation and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    const blob = unmarshalCredentialFile(fixture('credential-rsa.blob')).credentialBlob;
    // TPMS_ID_OBJECT's encIdentity is the rest of its buffer: no length of its own to hold to.
    expectOnlyOwnErrors(unmarshalIdObject, marshalIdObject, blob);
    for (const file of ['credential-rsa.blob', 'credential-ecc384.blob']) {
      expectParserContract(unmarshalCredentialFile, marshalCredentialFile, fixture(file));
    }
    expectParserContract(
      unmarshalTpm2bIdObject,
      marshalTpm2bIdObject,
      marshalTpm2bIdObject(Buffer.alloc(68, 1)),
    );
    expectParserContract(
      unmarshalTpm2bEncryptedSecret,
      marshalTpm2bEncryptedSecret,
      marshalTpm2bEncryptedSecret(Buffer.alloc(256, 1)),
    );
  });
});
