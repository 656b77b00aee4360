/** The simple TPM2B_* buffers: a u16 size then at most `max` bytes. */
import { marshal, parseAll, type TpmReader, type TpmWriter } from './buffer.js';
import { TPM_MAX } from './constants.js';

export interface Tpm2bKind {
  readonly name: string;
  readonly max: number;
}

export const TPM2B = {
  DIGEST: { name: 'TPM2B_DIGEST', max: TPM_MAX.DIGEST },
  DATA: { name: 'TPM2B_DATA', max: TPM_MAX.DATA },
  NONCE: { name: 'TPM2B_NONCE', max: TPM_MAX.DIGEST },
  AUTH: { name: 'TPM2B_AUTH', max: TPM_MAX.DIGEST },
  NAME: { name: 'TPM2B_NAME', max: TPM_MAX.NAME },
  PUBLIC_KEY_RSA: { name: 'TPM2B_PUBLIC_KEY_RSA', max: TPM_MAX.RSA_KEY_BYTES },
  ECC_PARAMETER: { name: 'TPM2B_ECC_PARAMETER', max: TPM_MAX.ECC_KEY_BYTES },
  MAX_NV_BUFFER: { name: 'TPM2B_MAX_NV_BUFFER', max: TPM_MAX.NV_BUFFER },
  ID_OBJECT: { name: 'TPM2B_ID_OBJECT', max: TPM_MAX.ID_OBJECT },
  ENCRYPTED_SECRET: { name: 'TPM2B_ENCRYPTED_SECRET', max: TPM_MAX.ENCRYPTED_SECRET },
} as const satisfies Record<string, Tpm2bKind>;

export function readTpm2b(r: TpmReader, kind: Tpm2bKind, field: string = kind.name): Buffer {
  return r.tpm2b(field, kind.max);
}

export function writeTpm2b(
  w: TpmWriter,
  kind: Tpm2bKind,
  value: Uint8Array,
  field: string = kind.name,
): void {
  w.tpm2b(value, kind.max, field);
}

/** Parse a complete TPM2B of the given kind; returns its buffer. */
export function unmarshalTpm2b(kind: Tpm2bKind, bytes: Uint8Array): Buffer {
  return parseAll(bytes, kind.name, (r) => r.tpm2b('buffer', kind.max));
}

export function marshalTpm2b(kind: Tpm2bKind, value: Uint8Array): Buffer {
  return marshal((w) => {
    w.tpm2b(value, kind.max, kind.name);
  });
}
