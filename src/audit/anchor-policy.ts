/**
 * The anchor's write policy: every write to the anchor NV indices needs a TPM2_PolicySigned
 * authorisation by the appliance's non-extractable P-256 key in its key store (the HSM), over
 * the TPM's fresh nonce. The indices carry the policy digest as their authPolicy, which is
 * part of their NV names, so the pinned names pin the key too (docs/audit.md "Write policy").
 * Pure computations here; the key is behind AnchorWriteKey (anchor-key.port.ts).
 */
import { createHash } from 'node:crypto';
import { TPM_ALG } from '../tpm/marshal/constants.js';
import {
  marshalTpm2bPublic,
  objectAttributes,
  objectName,
  type EccPublic,
} from '../tpm/marshal/public.js';
import { marshalTpmtSignature } from '../tpm/marshal/signature.js';
import { ECDSA_P256_SHA256 } from '../tpm/templates.js';
import type { PolicySigner, PolicySignRequest } from '../tpm/tpm.port.js';
import type { AnchorWriteKey } from './anchor-key.port.js';

/** TPM_CC_PolicySigned. */
const TPM_CC_POLICY_SIGNED = 0x160;

/** The P-256 point of an uncompressed SEC1 encoding (0x04 ‖ x ‖ y). */
function splitPoint(point: Uint8Array): { x: Buffer; y: Buffer } {
  if (point.length !== 65 || point[0] !== 0x04) {
    throw new RangeError('the anchor write key is not an uncompressed P-256 point');
  }
  const p = Buffer.from(point);
  return { x: p.subarray(1, 33), y: p.subarray(33, 65) };
}

/**
 * The TPMT_PUBLIC the TPM loads (LoadExternal, public part only) to check the key's
 * signatures: ECC P-256, ECDSA with SHA-256, a plain signing key. Fixed here, because its
 * bytes make the key's name and so the policy digest.
 */
export function anchorKeyTpmPublic(point: Uint8Array): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: objectAttributes('sign', 'userWithAuth', 'noDA'),
    authPolicy: Buffer.alloc(0),
    parameters: { ...ECDSA_P256_SHA256, kdf: { scheme: TPM_ALG.NULL } },
    unique: splitPoint(point),
  };
}

/** The key's TPM name: 0x000b ‖ SHA-256(TPMT_PUBLIC). */
export function anchorKeyName(point: Uint8Array): Buffer {
  return objectName(anchorKeyTpmPublic(point));
}

/**
 * The indices' authPolicy: TPM2_PolicySigned(key) from the empty policy, with an empty
 * policyRef (TPM 2.0 Part 3, 23.3): H(H(0³² ‖ TPM_CC_PolicySigned ‖ keyName) ‖ policyRef).
 */
export function anchorWritePolicy(point: Uint8Array): Buffer {
  const cc = Buffer.alloc(4);
  cc.writeUInt32BE(TPM_CC_POLICY_SIGNED, 0);
  const step = createHash('sha256')
    .update(Buffer.alloc(32))
    .update(cc)
    .update(anchorKeyName(point))
    .digest();
  return createHash('sha256').update(step).digest();
}

/**
 * What the key signs for one write: aHash = SHA-256(nonceTPM ‖ expiration ‖ cpHashA ‖
 * policyRef), expiration 0 (the authorisation holds for this session only), cpHashA the
 * NV command's parameter hash (nvWriteCpHash: this index, this data; an interposer cannot
 * swap them), policyRef empty.
 */
export function policySignedDigest(nonceTpm: Uint8Array, cpHashA: Uint8Array): Buffer {
  if (cpHashA.length !== 32) throw new RangeError('cpHashA is not a SHA-256 digest');
  return createHash('sha256').update(nonceTpm).update(Buffer.alloc(4)).update(cpHashA).digest();
}

/** The TPM port's view of the anchor write key: TPM2B_PUBLIC, TPMT_SIGNATURE. */
export function anchorPolicySigner(key: AnchorWriteKey, point: Uint8Array): PolicySigner {
  return {
    public: marshalTpm2bPublic(anchorKeyTpmPublic(point)),
    async sign(requests: readonly PolicySignRequest[]): Promise<Uint8Array[]> {
      const signatures = await key.signDigests(
        requests.map((r) => policySignedDigest(r.nonceTpm, r.cpHashA)),
      );
      if (signatures.length !== requests.length)
        throw new RangeError('the anchor write key returned another number of signatures');
      return signatures.map((rs) => {
        if (rs.length !== 64)
          throw new RangeError('the anchor write key returned no P-256 signature');
        return marshalTpmtSignature({
          sigAlg: TPM_ALG.ECDSA,
          hash: TPM_ALG.SHA256,
          r: rs.subarray(0, 32),
          s: rs.subarray(32, 64),
        });
      });
    },
  };
}
