/**
 * One base error with a stable `code` (snake_case, part of the wire contract, see
 * docs/protocol.md "Errors"). Callers and tests match on `code`, never on message text.
 * Every code, with its HTTP status, is a line of the one table in ./error-codes.ts.
 */
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export class GrantorError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }
}

/** Input that does not satisfy the contract (schema, encoding, ranges). */
export class BadRequestError extends GrantorError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('bad_request', message, options);
  }
}

/** A configuration value is missing or invalid; `key` names it. */
export class ConfigError extends GrantorError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('config_invalid', `${key}: ${message}`, { details: { key } });
    this.key = key;
  }
}

/** Not a state of the world but a failure nobody expected (a bug): 500, its message hidden. */
export class InternalError extends GrantorError {
  constructor(message = 'internal error', options?: { cause?: unknown }) {
    super('internal_error', message, options);
  }
}

/** A dependency the decision needs (TPM, HSM, audit, policy) cannot be used: fail closed. */
export class UnavailableError extends GrantorError {}
