/**
 * Failure kinds of enrollment, activation and quote verification: one class per kind, each
 * with its stable `code` (PROTOCOL.md "Errors"; statuses in src/shared/error-codes.ts).
 * Messages never carry secrets, expected values or the bytes that failed.
 */
import { GrantorError } from '../shared/errors.js';

type Options = { cause?: unknown; details?: Record<string, unknown> };

/** Every code this domain can answer with (for the status table and tests). */
export const ATTESTATION_CODES = [
  'ek_certificate_invalid',
  'ek_certificate_untrusted',
  'ek_certificate_expired',
  'ek_certificate_eku_invalid',
  'ek_certificate_san_invalid',
  'ek_certificate_key_mismatch',
  'ek_public_invalid',
  'ek_key_unsupported',
  'ek_key_weak',
  'ek_already_enrolled',
  'ek_revoked',
  'enrollment_expired',
  'runtime_identity_mismatch',
  'ak_public_invalid',
  'ak_key_unsupported',
  'ak_name_alg_weak',
  'ak_not_restricted',
  'ak_not_signing',
  'ak_decrypt_set',
  'ak_not_fixed_tpm',
  'ak_not_fixed_parent',
  'ak_not_sensitive_data_origin',
  'ak_scheme_unsupported',
  'ak_key_weak',
  'activation_failed',
  'unknown_runtime',
  'runtime_state_invalid',
  'session_key_invalid',
  'quote_malformed',
  'quote_magic_invalid',
  'quote_type_invalid',
  'quote_signature_scheme_mismatch',
  'quote_signature_out_of_range',
  'quote_signature_invalid',
  'quote_nonce_mismatch',
  'nonce_unknown',
  'nonce_expired',
  'nonce_reused',
  'pcr_selection_mismatch',
  'pcr_bank_not_allowed',
  'pcr_selection_incomplete',
  'pcr_digest_mismatch',
  'pcr_policy_violation',
  'tpm_counter_rollback',
  'tpm_clock_unsafe',
  'tpm_reset_detected',
  'tpm_clock_rollback',
  'tpm_firmware_refused',
  'quote_signer_mismatch',
  'reference_policy_unknown',
  'attestation_not_found',
  'ek_ca_bundle_invalid',
  'reference_policy_not_found',
  'reference_policy_state_invalid',
  'enrollment_rules_invalid',
] as const;

export type AttestationCode = (typeof ATTESTATION_CODES)[number];

abstract class AttestationError extends GrantorError {
  declare readonly code: AttestationCode;
  protected constructor(code: AttestationCode, message: string, options?: Options) {
    super(code, message, options);
  }
}

function kind(code: AttestationCode, defaultMessage: string) {
  return class extends AttestationError {
    constructor(message: string = defaultMessage, options?: Options) {
      super(code, message, options);
    }
  };
}

// Enrollment: the EK certificate and EK public key.
export class EkCertificateInvalidError extends kind(
  'ek_certificate_invalid',
  'the EK certificate is not a valid X.509 certificate',
) {}
export class EkCertificateUntrustedError extends kind(
  'ek_certificate_untrusted',
  'the EK certificate does not chain to a trusted TPM manufacturer CA',
) {}
export class EkCertificateExpiredError extends kind(
  'ek_certificate_expired',
  'a certificate of the EK chain is not valid at this time',
) {}
export class EkCertificateEkuError extends kind(
  'ek_certificate_eku_invalid',
  'the EK certificate extended key usage does not allow the TCG EK purpose',
) {}
export class EkCertificateSanError extends kind(
  'ek_certificate_san_invalid',
  'the EK certificate subject alternative name does not follow the TCG EK credential profile',
) {}
export class EkCertificateKeyMismatchError extends kind(
  'ek_certificate_key_mismatch',
  'the EK certificate public key is not the EK public key',
) {}
export class EkPublicInvalidError extends kind(
  'ek_public_invalid',
  'the EK public area is not a valid storage key',
) {}
export class EkKeyUnsupportedError extends kind(
  'ek_key_unsupported',
  'the EK key type is not RSA-2048 or ECC P-256/P-384',
) {}
export class EkKeyWeakError extends kind(
  'ek_key_weak',
  'the EK is an RSA key with the ROCA fingerprint (CVE-2017-15361)',
) {}
export class EkAlreadyEnrolledError extends kind(
  'ek_already_enrolled',
  'this EK is already enrolled',
) {}
/** The EK belongs to a revoked runtime: blocked on purpose until an operator releases it. */
export class EkRevokedError extends kind(
  'ek_revoked',
  'this EK belongs to a revoked runtime; an operator must release it before it can enroll again',
) {}
/** The pending enrollment outlived its lifetime; it is deleted and its EK and name freed. */
export class EnrollmentExpiredError extends kind(
  'enrollment_expired',
  'the enrollment expired before activation; enroll again',
) {}
export class RuntimeIdentityMismatchError extends kind(
  'runtime_identity_mismatch',
  'a runtime with this name is enrolled with another EK or AK',
) {}

// Enrollment: the AK (go-attestation CheckAKParameters, stricter).
export class AkPublicInvalidError extends kind(
  'ak_public_invalid',
  'the AK public area is not a valid TPM2B_PUBLIC',
) {}
export class AkKeyUnsupportedError extends kind(
  'ak_key_unsupported',
  'the AK is not RSA >= 2048 or ECC P-256/P-384',
) {}
export class AkNameAlgWeakError extends kind(
  'ak_name_alg_weak',
  'the AK name algorithm is weaker than SHA-256',
) {}
export class AkNotRestrictedError extends kind(
  'ak_not_restricted',
  'the AK is not restricted: it could sign forged attestation structures',
) {}
export class AkNotSigningError extends kind('ak_not_signing', 'the AK is not a signing key') {}
export class AkDecryptSetError extends kind('ak_decrypt_set', 'the AK is also a decryption key') {}
export class AkNotFixedTpmError extends kind(
  'ak_not_fixed_tpm',
  'the AK is not fixedTPM: it may be duplicated to another TPM',
) {}
export class AkNotFixedParentError extends kind(
  'ak_not_fixed_parent',
  'the AK is not fixedParent: it may be duplicated',
) {}
export class AkNotSensitiveDataOriginError extends kind(
  'ak_not_sensitive_data_origin',
  'the AK private key was not generated inside the TPM',
) {}
export class AkSchemeUnsupportedError extends kind(
  'ak_scheme_unsupported',
  'the AK signing scheme is not RSASSA, RSAPSS or ECDSA with SHA-256 or stronger',
) {}

// Activation and runtime state.
export class ActivationFailedError extends kind(
  'activation_failed',
  'activation failed; the enrollment is deleted',
) {}
export class UnknownRuntimeError extends kind('unknown_runtime', 'no such runtime') {}
export class RuntimeStateInvalidError extends kind(
  'runtime_state_invalid',
  'the runtime is not in a state that allows this',
) {}
export class SessionKeyInvalidError extends kind(
  'session_key_invalid',
  'the session key is not an EC P-256 public JWK',
) {}
export class ReferencePolicyUnknownError extends kind(
  'reference_policy_unknown',
  'no reference policy is assigned to this runtime',
) {}
export class AttestationNotFoundError extends kind(
  'attestation_not_found',
  'no live attested session for this attestation',
) {}

// Quote verification, in the verifier's order.
export class QuoteMalformedError extends kind(
  'quote_malformed',
  'the quote, signature or PCR values are not well-formed',
) {}
export class QuoteMagicError extends kind(
  'quote_magic_invalid',
  'the attestation structure was not generated by a TPM (magic)',
) {}
export class QuoteTypeError extends kind(
  'quote_type_invalid',
  'the attestation structure is not a quote',
) {}
export class QuoteSignatureSchemeError extends kind(
  'quote_signature_scheme_mismatch',
  'the signature scheme or hash is not the AK scheme',
) {}
export class QuoteSignatureRangeError extends kind(
  'quote_signature_out_of_range',
  'the ECDSA signature values are out of range',
) {}
export class QuoteSignatureInvalidError extends kind(
  'quote_signature_invalid',
  'the quote signature does not verify with the AK',
) {}
export class QuoteNonceMismatchError extends kind(
  'quote_nonce_mismatch',
  'the quote extraData is not the expected qualifying data',
) {}
export class NonceUnknownError extends kind(
  'nonce_unknown',
  'the nonce was not issued to this runtime',
) {}
export class NonceExpiredError extends kind('nonce_expired', 'the nonce has expired') {}
export class NonceReusedError extends kind('nonce_reused', 'the nonce was already used') {}
export class PcrSelectionMismatchError extends kind(
  'pcr_selection_mismatch',
  'the signed PCR selection differs from the PCRs the request claims values for',
) {}
export class PcrBankNotAllowedError extends kind(
  'pcr_bank_not_allowed',
  'the PCR bank is not allowed by the reference policy',
) {}
export class PcrSelectionIncompleteError extends kind(
  'pcr_selection_incomplete',
  'the quote does not cover every PCR the reference policy requires',
) {}
export class PcrDigestMismatchError extends kind(
  'pcr_digest_mismatch',
  'the digest of the supplied PCR values is not the quoted pcrDigest',
) {}
export class PcrPolicyViolationError extends kind(
  'pcr_policy_violation',
  'a PCR value is not allowed by the reference policy',
) {}
export class TpmCounterRollbackError extends kind(
  'tpm_counter_rollback',
  'the TPM reset or restart counter went backwards for this AK',
) {}
export class TpmClockUnsafeError extends kind(
  'tpm_clock_unsafe',
  'the TPM clock is not marked safe',
) {}
export class TpmResetDetectedError extends kind(
  'tpm_reset_detected',
  'the TPM was reset since the last quote and the reference policy forbids it',
) {}
export class AkKeyWeakError extends kind(
  'ak_key_weak',
  'the AK is an RSA key with the ROCA fingerprint (CVE-2017-15361)',
) {}
export class TpmClockRollbackError extends kind(
  'tpm_clock_rollback',
  'the TPM clock went back within one boot (same reset and restart counts)',
) {}
export class QuoteSignerMismatchError extends kind(
  'quote_signer_mismatch',
  'the quote qualifiedSigner is not the qualified name of the AK under its EK',
) {}
export class TpmFirmwareRefusedError extends kind(
  'tpm_firmware_refused',
  'the TPM firmware version is refused by the reference policy',
) {}

// Operator-managed trust (registrar.ts): the EK CA bundle, reference policies, rules.
/** A replacement EK CA bundle is refused: `details` name the certificate and the reason. */
export class EkCaBundleInvalidError extends AttestationError {
  constructor(message: string, details: { index?: number; reason: string }) {
    super('ek_ca_bundle_invalid', message, { details });
  }
}

/** No reference policy with that name is loaded. */
export class ReferencePolicyNotFoundError extends AttestationError {
  constructor(name: string) {
    super('reference_policy_not_found', `no reference policy ${name}`, { details: { name } });
  }
}

/** Disabling a disabled policy, or enabling an enabled one. */
export class ReferencePolicyStateError extends AttestationError {
  constructor(name: string, enabled: boolean) {
    super(
      'reference_policy_state_invalid',
      `reference policy ${name} is already ${enabled ? 'enabled' : 'disabled'}`,
      { details: { name, enabled } },
    );
  }
}

/** A replacement rule set is refused whole; the message names the rule and the reason. */
export class EnrollmentRulesInvalidError extends AttestationError {
  constructor(message: string) {
    super('enrollment_rules_invalid', message);
  }
}
