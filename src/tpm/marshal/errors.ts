import { GrantorError } from '../../shared/errors.js';

/** Where a parse failed: the structure being read, the field, and the byte offset. */
export interface TpmParseLocation {
  readonly structure: string;
  readonly field: string;
  readonly offset: number;
}

type ParseCode =
  'tpm_parse_truncated' | 'tpm_parse_oversized' | 'tpm_parse_trailing' | 'tpm_parse_invalid';

/**
 * Bytes that are not a valid TPM 2.0 structure. Messages name the structure and field but
 * never include the bytes themselves (they may carry secrets such as credential blobs).
 */
export abstract class TpmParseError extends GrantorError {
  declare readonly code: ParseCode;
  readonly structure: string;
  readonly field: string;
  readonly offset: number;

  protected constructor(code: ParseCode, message: string, at: TpmParseLocation) {
    super(code, `${at.structure}.${at.field} at offset ${at.offset}: ${message}`, {
      details: { structure: at.structure, field: at.field, offset: at.offset },
    });
    this.structure = at.structure;
    this.field = at.field;
    this.offset = at.offset;
  }
}

/** The input ends before the structure does. */
export class TpmParseTruncatedError extends TpmParseError {
  constructor(at: TpmParseLocation, needed: number, available: number) {
    super('tpm_parse_truncated', `needs ${needed} bytes, ${available} left`, at);
  }
}

/** A declared size is larger than the structure's maximum (e.g. a TPM2B_DIGEST over 64). */
export class TpmParseOversizedError extends TpmParseError {
  constructor(at: TpmParseLocation, declared: number, maximum: number) {
    super('tpm_parse_oversized', `declared size ${declared} exceeds maximum ${maximum}`, at);
  }
}

/** Bytes are left over after a complete top-level (or size-prefixed) structure. */
export class TpmParseTrailingError extends TpmParseError {
  constructor(at: TpmParseLocation, trailing: number) {
    super('tpm_parse_trailing', `${trailing} unconsumed bytes`, at);
  }
}

/** A value is not allowed here: unknown enum or selector, reserved bits, wrong length. */
export class TpmParseInvalidError extends TpmParseError {
  constructor(at: TpmParseLocation, reason: string) {
    super('tpm_parse_invalid', reason, at);
  }
}

/** A value handed to a marshal function cannot be encoded (out of range, too long, unknown). */
export class TpmMarshalError extends GrantorError {
  constructor(field: string, reason: string) {
    super('tpm_marshal_invalid', `${field}: ${reason}`, { details: { field } });
  }
}

export const TPM_PARSE_CODES: readonly ParseCode[] = [
  'tpm_parse_truncated',
  'tpm_parse_oversized',
  'tpm_parse_trailing',
  'tpm_parse_invalid',
];
