/**
 * The ECC curves an EK or an AK may use (P-256, P-384): one list, taken from the curve table
 * of src/tpm/marshal, that the key checks (ak.ts, ek-certificate.ts), an EK certificate's
 * JWK and MakeCredential's ECDH share.
 */
import { TPM_ECC } from '../tpm/marshal/constants.js';
import { ECC_CURVES } from '../tpm/marshal/public.js';

export interface AttestationCurve {
  /** TPM_ECC_CURVE id. */
  readonly id: number;
  /** JWK `crv`. */
  readonly jwk: string;
  /** node:crypto's name. */
  readonly node: string;
  /** Bytes of one coordinate. */
  readonly size: number;
}

const CURVES: readonly AttestationCurve[] = [TPM_ECC.NIST_P256, TPM_ECC.NIST_P384].map((id) => ({
  id,
  ...ECC_CURVES[id],
}));

/** The curve of a TPM curve id when attestation accepts it, else undefined. */
export function attestationCurve(curveId: number): AttestationCurve | undefined {
  return CURVES.find((c) => c.id === curveId);
}

/** The curve of a JWK `crv` when attestation accepts it, else undefined. */
export function attestationCurveOfJwk(crv: string | undefined): AttestationCurve | undefined {
  return CURVES.find((c) => c.jwk === crv);
}
