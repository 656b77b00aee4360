import {
  constants,
  createDecipheriv,
  createECDH,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  randomBytes,
} from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unmarshalCredentialFile, unmarshalIdObject } from '../tpm/marshal/credential.js';
import { EK_TEMPLATE_ECC_P256, EK_TEMPLATE_RSA2048, withUnique } from '../tpm/templates.js';
import { kdfa, kdfe, makeCredential } from './make-credential.js';

const name = Buffer.concat([Buffer.from('000b', 'hex'), randomBytes(32)]);

/** TPM2_ActivateCredential's software half, given the seed: check the HMAC, decrypt. */
function recover(seed: Buffer, blob: Uint8Array, keyBits: number): Buffer {
  const { integrityHmac, encIdentity } = unmarshalIdObject(blob);
  const hmacKey = kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256);
  const expected = createHmac('sha256', hmacKey).update(encIdentity).update(name).digest();
  if (!expected.equals(Buffer.from(integrityHmac))) throw new Error('integrity');
  const symKey = kdfa('sha256', seed, 'STORAGE', name, Buffer.alloc(0), keyBits);
  const d = createDecipheriv(`aes-${keyBits}-cfb`, symKey, Buffer.alloc(16));
  const plain = Buffer.concat([d.update(encIdentity), d.final()]);
  return plain.subarray(2, 2 + plain.readUInt16BE(0));
}

describe('makeCredential (software round trip)', () => {
  it('RSA EK: OAEP-SHA256 with label IDENTITY protects the seed', () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const n = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
    const ek = withUnique(EK_TEMPLATE_RSA2048, n);
    const secret = randomBytes(32);
    const made = makeCredential(ek, name, secret);
    const file = unmarshalCredentialFile(made.file);
    const seed = privateDecrypt(
      {
        key: privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: Buffer.from('IDENTITY\0'),
      },
      Buffer.from(file.encryptedSecret),
    );
    expect(recover(seed, file.credentialBlob, 128).equals(secret)).toBe(true);
  });

  it('ECC P-256 EK: ECDH with an ephemeral key, KDFe', () => {
    const ekKey = createECDH('prime256v1');
    ekKey.generateKeys();
    const pub = ekKey.getPublicKey();
    const ek = withUnique(EK_TEMPLATE_ECC_P256, { x: pub.subarray(1, 33), y: pub.subarray(33) });
    const secret = randomBytes(20);
    const file = unmarshalCredentialFile(makeCredential(ek, name, secret).file);
    const point = Buffer.from(file.encryptedSecret);
    const ephX = point.subarray(2, 34);
    const ephY = point.subarray(36, 68);
    expect(point.readUInt16BE(0)).toBe(32);
    const z = ekKey.computeSecret(Buffer.concat([Buffer.from([4]), ephX, ephY]));
    const seed = kdfe('sha256', z, 'IDENTITY', ephX, pub.subarray(1, 33), 256);
    expect(recover(seed, file.credentialBlob, 128).equals(secret)).toBe(true);
  });

  it('refuses a secret longer than the EK name digest, and an EK that is not a storage key', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const n = Buffer.from(publicKey.export({ format: 'jwk' }).n ?? '', 'base64url');
    const ek = withUnique(EK_TEMPLATE_RSA2048, n);
    expect(() => makeCredential(ek, name, randomBytes(33))).toThrow(RangeError);
    const signing = { ...ek, objectAttributes: { ...ek.objectAttributes, decrypt: false } };
    expect(() => makeCredential(signing, name, randomBytes(32))).toThrow(
      expect.objectContaining({ code: 'ek_public_invalid' }),
    );
  });

  it('KDFa: output of the requested length, bound to label and contexts', () => {
    const key = randomBytes(32);
    const a = kdfa('sha256', key, 'STORAGE', name, Buffer.alloc(0), 384);
    expect(a.length).toBe(48);
    expect(a.equals(kdfa('sha256', key, 'INTEGRITY', name, Buffer.alloc(0), 384))).toBe(false);
    expect(
      a.subarray(0, 32).equals(kdfa('sha256', key, 'STORAGE', name, Buffer.alloc(0), 256)),
    ).toBe(false);
  });
});
