/**
 * HTTP statuses of error codes (the one table is src/shared/error-codes.ts) and the public
 * message for 5xx codes (a 5xx body reveals nothing internal: a fixed text per code).
 */
import { ERROR_CODES, type ErrorCode } from '../shared/error-codes.js';

export { ERROR_STATUS, type WireErrorCode } from '../shared/error-codes.js';

const PUBLIC_5XX_MESSAGE: Readonly<Partial<Record<ErrorCode, string>>> = {
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
  audit_not_provisioned: 'not provisioned: run `grantor provision`',
  policy_unavailable: 'the policy engine is unavailable',
  operator_store_corrupt: 'the operator store is unusable; an operator must act',
  gateway_store_unavailable: 'the gateway store is unavailable',
  grant_store_unavailable: 'the grant store is unavailable',
  not_ready: 'the service is not ready',
  revocation_feed_full: 'the revocation feed is full; try again later',
};

/** Status for a code; a code no route answers with (LOCAL) is a bug there and answers 500. */
export function statusForCode(code: ErrorCode): number {
  return ERROR_CODES[code] ?? 500;
}

export function publicMessage(code: ErrorCode, status: number, message: string): string {
  if (status < 500) return message;
  return PUBLIC_5XX_MESSAGE[code] ?? 'internal error';
}
