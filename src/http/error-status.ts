/**
 * The one table from error codes (PROTOCOL.md "Errors") to HTTP statuses, and the public
 * message for 5xx codes (a 5xx body reveals nothing internal: a fixed text per code).
 */
export const ERROR_STATUS: Readonly<Record<string, number>> = {
  // 4xx: the caller's fault
  bad_request: 400,
  config_invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  policy_denied: 403,
  activation_failed: 403,
  not_found: 404,
  unknown_runtime: 404,
  key_not_found: 404,
  grant_not_found: 404,
  key_state_invalid: 409,
  grant_already_redeemed: 409,
  runtime_state_invalid: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  nonce_unknown: 422,
  nonce_expired: 422,
  nonce_reused: 422,
  quote_signature_invalid: 422,
  quote_nonce_mismatch: 422,
  pcr_digest_mismatch: 422,
  pcr_policy_violation: 422,
  tpm_reset_detected: 422,
  policy_set_invalid: 422,
  rate_limited: 429,
  // attestation (src/attestation/errors.ts)
  quote_malformed: 400,
  session_key_invalid: 400,
  ek_certificate_invalid: 400,
  ek_public_invalid: 400,
  ak_public_invalid: 400,
  ek_certificate_untrusted: 422,
  ek_certificate_expired: 422,
  ek_certificate_eku_invalid: 422,
  ek_certificate_san_invalid: 422,
  ek_certificate_key_mismatch: 422,
  ek_key_unsupported: 422,
  ak_key_unsupported: 422,
  ak_name_alg_weak: 422,
  ak_not_restricted: 422,
  ak_not_signing: 422,
  ak_decrypt_set: 422,
  ak_not_fixed_tpm: 422,
  ak_not_fixed_parent: 422,
  ak_not_sensitive_data_origin: 422,
  ak_scheme_unsupported: 422,
  quote_magic_invalid: 422,
  quote_type_invalid: 422,
  quote_signature_scheme_mismatch: 422,
  quote_signature_out_of_range: 422,
  pcr_selection_mismatch: 422,
  pcr_bank_not_allowed: 422,
  pcr_selection_incomplete: 422,
  tpm_counter_rollback: 422,
  tpm_clock_unsafe: 422,
  ek_already_enrolled: 409,
  runtime_identity_mismatch: 409,
  reference_policy_unknown: 409,
  attestation_not_found: 404,
  // operators (src/operators/errors.ts)
  approval_required: 409,
  approval_expired: 409,
  approval_reused: 409,
  approval_duplicate_actor: 409,
  approval_not_found: 404,
  operator_token_not_found: 404,
  // 5xx: a dependency the decision needs is not usable; the service fails closed
  internal_error: 500,
  hsm_unavailable: 503,
  hsm_pin_incorrect: 503,
  hsm_pin_locked: 503,
  hsm_key_unsafe: 503,
  hsm_key_missing: 503,
  key_store_corrupt: 503,
  tpm_unavailable: 503,
  tpm_error: 503,
  audit_unavailable: 503,
  audit_rollback_detected: 503,
  policy_unavailable: 503,
  operator_store_corrupt: 503,
  not_ready: 503,
};

const PUBLIC_5XX_MESSAGE: Readonly<Record<string, string>> = {
  hsm_unavailable: 'the HSM is unavailable',
  hsm_pin_incorrect: 'the HSM is unavailable',
  hsm_pin_locked: 'the HSM is unavailable',
  hsm_key_unsafe: 'the HSM is unavailable',
  hsm_key_missing: 'the HSM is unavailable',
  key_store_corrupt: 'the key store is unusable; an operator must act',
  tpm_unavailable: 'the TPM is unavailable',
  tpm_error: 'the TPM is unavailable',
  audit_unavailable: 'the audit log is unavailable',
  audit_rollback_detected: 'the audit log does not match its TPM anchor; an operator must act',
  policy_unavailable: 'the policy engine is unavailable',
  operator_store_corrupt: 'the operator store is unusable; an operator must act',
  not_ready: 'the service is not ready',
};

/** Status for a code; an unmapped code is a bug and answers 500. */
export function statusForCode(code: string): number {
  return ERROR_STATUS[code] ?? 500;
}

export function publicMessage(code: string, status: number, message: string): string {
  if (status < 500) return message;
  return PUBLIC_5XX_MESSAGE[code] ?? 'internal error';
}
