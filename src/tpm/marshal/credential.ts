/**
 * TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (the outputs of TPM2_MakeCredential), and the
 * file form that `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads:
 * BADCC0DE 00000001 || TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET.
 */
import { marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_MAX } from './constants.js';

export const CREDENTIAL_FILE_MAGIC = 0xbadcc0de;
export const CREDENTIAL_FILE_VERSION = 1;

export interface Credential {
  /** TPM2B_ID_OBJECT.credential: integrityHMAC (a TPM2B_DIGEST) || encIdentity. */
  readonly credentialBlob: Uint8Array;
  /** TPM2B_ENCRYPTED_SECRET.secret: the seed, encrypted to the EK. */
  readonly encryptedSecret: Uint8Array;
}

export function readTpm2bIdObject(r: TpmReader): Buffer {
  return r.tpm2b('credentialBlob', TPM_MAX.ID_OBJECT);
}

export function readTpm2bEncryptedSecret(r: TpmReader): Buffer {
  return r.tpm2b('encryptedSecret', TPM_MAX.ENCRYPTED_SECRET);
}

export function writeTpm2bIdObject(w: TpmWriter, blob: Uint8Array): void {
  w.tpm2b(blob, TPM_MAX.ID_OBJECT, 'credentialBlob');
}

export function writeTpm2bEncryptedSecret(w: TpmWriter, secret: Uint8Array): void {
  w.tpm2b(secret, TPM_MAX.ENCRYPTED_SECRET, 'encryptedSecret');
}

export function unmarshalTpm2bIdObject(bytes: Uint8Array): Buffer {
  return parseAll(bytes, 'TPM2B_ID_OBJECT', readTpm2bIdObject);
}

export function unmarshalTpm2bEncryptedSecret(bytes: Uint8Array): Buffer {
  return parseAll(bytes, 'TPM2B_ENCRYPTED_SECRET', readTpm2bEncryptedSecret);
}

export function marshalTpm2bIdObject(blob: Uint8Array): Buffer {
  return marshal((w) => {
    writeTpm2bIdObject(w, blob);
  });
}

export function marshalTpm2bEncryptedSecret(secret: Uint8Array): Buffer {
  return marshal((w) => {
    writeTpm2bEncryptedSecret(w, secret);
  });
}

/** TPMS_ID_OBJECT inside a credential blob. */
export interface IdObject {
  readonly integrityHmac: Uint8Array;
  readonly encIdentity: Uint8Array;
}

/** Split a credential blob into its integrity HMAC and the encrypted identity. */
export function unmarshalIdObject(credentialBlob: Uint8Array): IdObject {
  return parseAll(credentialBlob, 'TPMS_ID_OBJECT', (r) => ({
    integrityHmac: r.tpm2b('integrityHMAC', TPM_MAX.DIGEST),
    encIdentity: r.rest('encIdentity'),
  }));
}

export function marshalIdObject(id: IdObject): Buffer {
  return marshal((w) => {
    w.tpm2b(id.integrityHmac, TPM_MAX.DIGEST, 'integrityHMAC').bytes(id.encIdentity);
  });
}

/** Parse the tpm2-tools credential file. */
export function unmarshalCredentialFile(bytes: Uint8Array): Credential {
  return parseAll(bytes, 'credential file', (r) => {
    const magicAt = r.offset;
    if (r.u32('magic') !== CREDENTIAL_FILE_MAGIC) throw r.invalid('magic', 'not BADCC0DE', magicAt);
    const versionAt = r.offset;
    if (r.u32('version') !== CREDENTIAL_FILE_VERSION)
      throw r.invalid('version', 'not version 1', versionAt);
    return { credentialBlob: readTpm2bIdObject(r), encryptedSecret: readTpm2bEncryptedSecret(r) };
  });
}

export function marshalCredentialFile(c: Credential): Buffer {
  return marshal((w) => {
    w.u32(CREDENTIAL_FILE_MAGIC, 'magic').u32(CREDENTIAL_FILE_VERSION, 'version');
    writeTpm2bIdObject(w, c.credentialBlob);
    writeTpm2bEncryptedSecret(w, c.encryptedSecret);
  });
}
