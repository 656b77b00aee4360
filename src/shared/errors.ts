/**
 * One base error with a stable `code` (snake_case, part of the wire contract, see
 * docs/protocol.md "Errors"). Callers and tests match on `code`, never on message text.
 * Every code, with its HTTP status, is a line of the one table in ./error-codes.ts.
 */
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

/** What every GrantorError may carry besides its code and message. */
export interface ErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class GrantorError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }
}

/** Input that does not satisfy the contract (schema, encoding, ranges). */
export class BadRequestError extends GrantorError {
  constructor(message: string, options?: ErrorOptions) {
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

/** A class a kind may extend: one constructed as GrantorError is, from code and message. */
export type KindBase<T extends GrantorError> = new (
  code: ErrorCode,
  message: string,
  options?: ErrorOptions,
) => T;

/** A kind's class: its message may be left out where the domain gives it a default. */
export type ErrorKind<T extends GrantorError, Defaulted extends boolean> = [Defaulted] extends [
  true,
]
  ? new (message?: string, options?: ErrorOptions) => T
  : new (message: string, options?: ErrorOptions) => T;

/**
 * The one way a domain declares a failure kind whose class would only set its code and
 * message: `export class XError extends kind('x_code') {}`, or `kind('x_code', UnavailableError)`
 * to extend another base. `messages` are the domain's default messages by code; a kind with
 * none takes its message from every caller. `domainBase` (GrantorError unless given) is the
 * base of every kind that names none. A class that carries more (details built from
 * its arguments, extra fields) is written by hand on GrantorError. A domain's errors.ts lists
 * its classes written by hand first, then its plain kinds, one line each.
 */
export function errorKinds<
  const M extends Partial<Record<ErrorCode, string>>,
  T extends GrantorError = GrantorError,
>(messages: M, domainBase?: KindBase<T>) {
  return function kind<C extends ErrorCode, U extends GrantorError = T>(
    code: C,
    base?: KindBase<U>,
  ): ErrorKind<U, C extends keyof M ? true : false> {
    const Base: KindBase<GrantorError> = base ?? domainBase ?? GrantorError;
    const fallback: string | undefined = messages[code];
    const Kind = class extends Base {
      constructor(message?: string, options?: ErrorOptions) {
        super(code, message ?? fallback ?? code, options);
      }
    };
    return Kind as unknown as ErrorKind<U, C extends keyof M ? true : false>;
  };
}

/** `kind()` for a domain whose kinds all take their message from the caller. */
export const kind = errorKinds({});
