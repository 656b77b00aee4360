/**
 * One check of a TPM2_NV_Certify of an anchor index, shared by the offline verifier
 * (verify-export.ts) and the anchor's start-up read (anchor.tpm.ts): whatever carried the
 * bytes (an export file, a TPM bus with an interposer on it), only a TPM holding the pinned
 * AK can make a certification that passes. Returns the certified contents.
 */
import { unmarshalTpmsAttest } from '../tpm/marshal/attest.js';
import { TPM_GENERATED_VALUE, TPM_ST } from '../tpm/marshal/constants.js';
import { unmarshalTpm2bPublic } from '../tpm/marshal/public.js';
import { unmarshalTpmtSignature } from '../tpm/marshal/signature.js';
import { verifyTpmtSignature } from '../tpm/marshal/verify.js';

/** The certification does not prove what was asked; the message says which check failed. */
export class NvCertifyCheckError extends Error {}

export interface NvCertifyExpectation {
  /** TPM2B_PUBLIC of the pinned AK. */
  readonly akPublic: Buffer;
  readonly nonce: Buffer;
  /** The pinned NV name (hex). */
  readonly name: string;
  /** The index's whole size: 8 for the counter, 32 for the extend index. */
  readonly size: number;
}

export function checkNvCertification(
  attestBytes: Buffer,
  signature: Buffer,
  want: NvCertifyExpectation,
): Buffer {
  let ak;
  try {
    ak = unmarshalTpm2bPublic(want.akPublic);
  } catch (err) {
    throw new NvCertifyCheckError('AK public key does not parse', { cause: err });
  }
  let attest;
  try {
    attest = unmarshalTpmsAttest(attestBytes);
    verifyTpmtSignature(ak, unmarshalTpmtSignature(signature), attestBytes);
  } catch (err) {
    throw new NvCertifyCheckError('signature does not verify with the AK', { cause: err });
  }
  // Only a TPM writes TPM_GENERATED into what a restricted key signs.
  if (attest.magic !== TPM_GENERATED_VALUE) throw new NvCertifyCheckError('not TPM-generated');
  if (attest.attested.type !== TPM_ST.ATTEST_NV) {
    throw new NvCertifyCheckError('not an NV attestation');
  }
  // A fresh nonce: an old certification (or one replayed off the bus) does not pass.
  if (!Buffer.from(attest.extraData).equals(want.nonce)) {
    throw new NvCertifyCheckError('not qualified with the nonce');
  }
  // A decoy index (same values, another handle or other attributes) has another name.
  if (Buffer.from(attest.attested.indexName).toString('hex') !== want.name.toLowerCase()) {
    throw new NvCertifyCheckError('certifies an NV index that is not the pinned one');
  }
  const contents = Buffer.from(attest.attested.nvContents);
  if (attest.attested.offset !== 0 || contents.length !== want.size) {
    throw new NvCertifyCheckError('partial read');
  }
  return contents;
}
