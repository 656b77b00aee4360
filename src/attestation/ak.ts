/**
 * Attestation key checks at enrollment (go-attestation `CheckAKParameters`, stricter): a
 * flat list of guard clauses, each its own error.
 */
import { createHash } from 'node:crypto';
import { TPM_ALG, TPM_RH, hashInfo } from '../tpm/marshal/constants.js';
import {
  objectName,
  unmarshalTpm2bPublic,
  type EccPublic,
  type RsaPublic,
  type TpmtPublic,
} from '../tpm/marshal/public.js';
import { TpmParseError } from '../tpm/errors.js';
import {
  AkDecryptSetError,
  AkKeyUnsupportedError,
  AkKeyWeakError,
  AkNameAlgWeakError,
  AkNotFixedParentError,
  AkNotFixedTpmError,
  AkNotRestrictedError,
  AkNotSensitiveDataOriginError,
  AkNotSigningError,
  AkPublicInvalidError,
  AkSchemeUnsupportedError,
} from './errors.js';
import { attestationCurve } from './curves.js';
import { hasRocaFingerprint } from './roca.js';

export type AkPublic = RsaPublic | EccPublic;

const STRONG_HASHES: readonly number[] = [TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512];

/** Parse a TPM2B_PUBLIC (`tpm2_createak -u`) and check it is an acceptable AK. */
export function parseAkPublic(tpm2bPublic: Uint8Array): AkPublic {
  let pub: TpmtPublic;
  try {
    pub = unmarshalTpm2bPublic(tpm2bPublic);
  } catch (e) {
    if (e instanceof TpmParseError) throw new AkPublicInvalidError(undefined, { cause: e });
    throw e;
  }
  return checkAkPublic(pub);
}

export function checkAkPublic(ak: TpmtPublic): AkPublic {
  const a = ak.objectAttributes;
  // Unrestricted: the AK would sign any digest, including a forged TPMS_ATTEST.
  if (!a.restricted) throw new AkNotRestrictedError();
  if (!a.sign) throw new AkNotSigningError();
  // A key that also decrypts is not an attestation-only key.
  if (a.decrypt) throw new AkDecryptSetError();
  // Without fixedTPM/fixedParent the key could be duplicated out of this TPM.
  if (!a.fixedTPM) throw new AkNotFixedTpmError();
  if (!a.fixedParent) throw new AkNotFixedParentError();
  // Imported key material could be known outside the TPM.
  if (!a.sensitiveDataOrigin) throw new AkNotSensitiveDataOriginError();
  if (!STRONG_HASHES.includes(ak.nameAlg)) throw new AkNameAlgWeakError();
  if (ak.type === TPM_ALG.RSA) {
    if (ak.parameters.keyBits < 2048 || ak.unique.length * 8 !== ak.parameters.keyBits)
      throw new AkKeyUnsupportedError();
    // A ROCA modulus can be factored: whoever does can sign quotes without the TPM.
    if (hasRocaFingerprint(ak.unique)) throw new AkKeyWeakError();
    const s = ak.parameters.scheme;
    if (
      (s.scheme !== TPM_ALG.RSASSA && s.scheme !== TPM_ALG.RSAPSS) ||
      !STRONG_HASHES.includes(s.hashAlg)
    )
      throw new AkSchemeUnsupportedError();
    return ak;
  }
  if (ak.type === TPM_ALG.ECC) {
    const size = attestationCurve(ak.parameters.curveId)?.size;
    if (size === undefined || ak.unique.x.length !== size || ak.unique.y.length !== size)
      throw new AkKeyUnsupportedError();
    const s = ak.parameters.scheme;
    if (s.scheme !== TPM_ALG.ECDSA || !STRONG_HASHES.includes(s.hashAlg))
      throw new AkSchemeUnsupportedError();
    return ak;
  }
  throw new AkKeyUnsupportedError();
}

/** QN = nameAlg ‖ H_nameAlg(QN of the parent ‖ Name) (TPM 2.0 Part 1, "Qualified Name"). */
function qualify(parentQn: Uint8Array, name: Uint8Array): Buffer {
  const alg = name.length >= 2 ? ((name[0] ?? 0) << 8) | (name[1] ?? 0) : 0;
  const info = hashInfo(alg);
  if (info?.node === undefined) throw new AkPublicInvalidError('the name has no hash algorithm');
  const digest = createHash(info.node).update(parentQn).update(name).digest();
  return Buffer.concat([name.subarray(0, 2), digest]);
}

/**
 * The qualified name of an AK created directly under the EK (a primary key of the
 * endorsement hierarchy, whose QN is its handle): what a quote by that AK carries as
 * qualifiedSigner. Checked against `tpm2_readpublic -q` on swtpm (test/attestation).
 */
export function akQualifiedNameUnderEk(ek: TpmtPublic, akName: Uint8Array): Buffer {
  const hierarchy = Buffer.alloc(4);
  hierarchy.writeUInt32BE(TPM_RH.ENDORSEMENT);
  return qualify(qualify(hierarchy, objectName(ek)), akName);
}
