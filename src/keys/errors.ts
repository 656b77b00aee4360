/**
 * Failures of the key domain. Each kind has its own class and a stable `code` (the HTTP
 * status for each code lives in src/shared/error-codes.ts). Messages never carry the PIN.
 */
import { type ErrorOptions, GrantorError, kind, UnavailableError } from '../shared/errors.js';

/** The HSM cannot sign now (lost session, removed token, restart, deadline): fail closed. */
export class HsmUnavailableError extends kind('hsm_unavailable', UnavailableError) {}

/** A signing call did not finish within its deadline (still `hsm_unavailable` on the wire). */
export class HsmDeadlineExceededError extends HsmUnavailableError {
  constructor(deadlineMs: number) {
    super(`HSM operation did not finish within ${deadlineMs} ms`, {
      details: { reason: 'deadline', deadlineMs },
    });
  }
}

/** The token refused the configured PIN. Reported once; login is not retried. */
export class HsmPinIncorrectError extends UnavailableError {
  constructor(options?: ErrorOptions) {
    super('hsm_pin_incorrect', 'the HSM token refused the configured user PIN', options);
  }
}

/** The token's user PIN is locked; an officer must unlock it. Login is not retried. */
export class HsmPinLockedError extends UnavailableError {
  constructor(options?: ErrorOptions) {
    super('hsm_pin_locked', 'the HSM token user PIN is locked', options);
  }
}

/** A key in use could leave the HSM (or is not the key the store names): refuse it. */
export class HsmKeyUnsafeError extends kind('hsm_key_unsafe', UnavailableError) {}

/** A key the store names has no object (private or public) on the token. */
export class HsmKeyMissingError extends kind('hsm_key_missing', UnavailableError) {}

/** No key with this kid. */
export class KeyNotFoundError extends GrantorError {
  constructor(kid: string) {
    super('key_not_found', `no key with kid ${kid}`, { details: { kid } });
  }
}

/** The key's state does not allow the requested transition or use. */
export class KeyStateInvalidError extends GrantorError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('key_state_invalid', message, details === undefined ? undefined : { details });
  }
}

/** The key store holds something that is not a valid key record. */
export class KeyStoreCorruptError extends kind('key_store_corrupt') {}
