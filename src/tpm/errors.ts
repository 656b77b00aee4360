/**
 * Every TPM error class, in one file: the adapter's failures (the addon rejects with a
 * structured object `{code: 'ERR_TPM_RC', rc, layer, decoded, command}`, Tss2_RC_Decode on the
 * native side; nothing here is parsed back out of a message string), then those of the TPM
 * structures in `./marshal` (parsing and marshalling, keys, PCR values, signatures), which
 * the marshal modules re-export where callers found them before.
 */
import { GrantorError, UnavailableError } from '../shared/errors.js';

/** The tpm2-tss layer that produced a response code ((rc >> 16) & 0xff). */
export type TpmRcLayer =
  'tpm' | 'feature' | 'esys' | 'sys' | 'mu' | 'tcti' | 'resmgr' | 'resmgr-tpm' | 'unknown';

const LAYERS: readonly TpmRcLayer[] = [
  'tpm',
  'feature',
  'esys',
  'sys',
  'mu',
  'tcti',
  'resmgr',
  'resmgr-tpm',
];

/** TPM response codes callers branch on (TPM 2.0 Part 2, 6.6), as base codes. */
export const TPM_RC = {
  INITIALIZE: 0x100,
  NV_UNINITIALIZED: 0x14a,
  NV_DEFINED: 0x14c,
  NV_RANGE: 0x146,
  NV_LOCKED: 0x148,
  AUTH_FAIL: 0x08e,
  BAD_AUTH: 0x0a2,
  HANDLE: 0x08b,
  POLICY_FAIL: 0x09d,
  VALUE: 0x084,
  INTEGRITY: 0x09f,
  NV_RATE: 0x920,
  RETRY: 0x922,
  OBJECT_MEMORY: 0x902,
  SESSION_MEMORY: 0x903,
  SESSION_HANDLES: 0x905,
} as const;

/**
 * The response code without its handle/parameter/session number: format-one codes keep
 * bits 0-5 and the F bit, format-zero codes their low 12 bits. Only for the TPM layer.
 */
export function tpmBaseRc(rc: number): number {
  if ((rc & 0xffff0000) !== 0) return rc;
  return (rc & 0x80) !== 0 ? rc & 0xbf : rc & 0xfff;
}

/** A TPM command failed (TPM, ESYS, SYS or MU layer). */
export class TpmError extends GrantorError {
  readonly rc: number;
  readonly layer: TpmRcLayer;
  readonly decoded: string;
  readonly command: string;

  constructor(
    command: string,
    rc: number,
    layer: TpmRcLayer,
    decoded: string,
    options?: { cause?: unknown },
  ) {
    super('tpm_error', `${command} failed: ${decoded}`, {
      ...(options?.cause === undefined ? {} : { cause: options.cause }),
      details: { command, rc, layer },
    });
    this.command = command;
    this.rc = rc;
    this.layer = layer;
    this.decoded = decoded;
  }

  /** For TPM-layer codes: the base response code (compare with TPM_RC.*). */
  get baseRc(): number {
    return tpmBaseRc(this.rc);
  }

  is(base: number): boolean {
    return this.layer === 'tpm' && this.baseRc === base;
  }
}

/** The TPM cannot be reached (connection refused or lost: TCTI layer). Fail closed. */
export class TpmUnavailableError extends UnavailableError {
  readonly rc: number | undefined;
  readonly layer: TpmRcLayer | undefined;
  readonly decoded: string | undefined;

  constructor(
    message: string,
    native?: { rc: number; layer: TpmRcLayer; decoded: string; cause?: unknown },
  ) {
    super('tpm_unavailable', message, {
      ...(native?.cause === undefined ? {} : { cause: native.cause }),
      ...(native === undefined ? {} : { details: { rc: native.rc, layer: native.layer } }),
    });
    this.rc = native?.rc;
    this.layer = native?.layer;
    this.decoded = native?.decoded;
  }
}

/** The adapter was closed: queued and later calls fail with this (still `tpm_unavailable`). */
export class TpmClosedError extends TpmUnavailableError {
  constructor() {
    super('the TPM adapter is closed');
  }
}

/** The TPM answered, but not with what was asked (e.g. a PCR bank it does not have). */
export class TpmResponseError extends GrantorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('tpm_error', message, options);
  }
}

/** Invalid arguments to the adapter (caught before any TPM command is sent). */
export class TpmArgumentError extends GrantorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('bad_request', message, options);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** Maps a rejection of the addon to the adapter's errors. */
export function fromNative(e: unknown, command: string): GrantorError {
  if (e instanceof GrantorError) return e;
  if (isRecord(e) && e.code === 'ERR_TPM_RC' && typeof e.rc === 'number') {
    const layer = LAYERS.find((l) => l === e.layer) ?? 'unknown';
    const decoded = typeof e.decoded === 'string' ? e.decoded : 'unknown';
    const cmd = typeof e.command === 'string' ? e.command : command;
    if (layer === 'tcti') {
      return new TpmUnavailableError(`${cmd}: TPM connection failed: ${decoded}`, {
        rc: e.rc,
        layer,
        decoded,
        cause: e,
      });
    }
    return new TpmError(cmd, e.rc, layer, decoded, { cause: e });
  }
  if (isRecord(e) && e.code === 'ERR_TPM_CLOSED') return new TpmClosedError();
  if (isRecord(e) && e.code === 'ERR_INVALID_ARG_TYPE') {
    return new TpmArgumentError(
      `${command}: ${typeof e.message === 'string' ? e.message : 'invalid argument'}`,
      {
        cause: e,
      },
    );
  }
  return new TpmResponseError(`${command}: unexpected failure`, { cause: e });
}

// ---- TPM structures (./marshal) ----

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

/** The public area is not an RSA or NIST-curve ECC key that node:crypto can use. */
export class TpmKeyUnsupportedError extends GrantorError {
  constructor(reason: string) {
    super('tpm_key_unsupported', reason);
  }
}

/** The public area's key material is malformed (wrong length, point not on the curve). */
export class TpmKeyInvalidError extends GrantorError {
  constructor(reason: string, cause?: unknown) {
    super('tpm_key_invalid', reason, cause === undefined ? undefined : { cause });
  }
}

/** A PCR value that the selection needs is missing or has the wrong length. */
export class PcrValuesError extends GrantorError {
  constructor(reason: string, details: { bank: string; pcr?: number }) {
    super('tpm_pcr_values_invalid', reason, { details });
  }
}

/** The signature's scheme does not fit the key (type, or the key's fixed scheme). */
export class TpmSignatureSchemeMismatchError extends GrantorError {
  constructor(reason: string) {
    super('tpm_signature_scheme_mismatch', reason);
  }
}

/** The signature's hash is not the key's scheme hash, or not one node:crypto can verify. */
export class TpmSignatureHashMismatchError extends GrantorError {
  constructor(reason: string) {
    super('tpm_signature_hash_mismatch', reason);
  }
}

/** ECDSA r or s outside [1, n-1], or an RSA signature not the size of the modulus. */
export class TpmSignatureOutOfRangeError extends GrantorError {
  constructor(reason: string) {
    super('tpm_signature_out_of_range', reason);
  }
}

/** The signature does not verify. */
export class TpmSignatureInvalidError extends GrantorError {
  constructor() {
    super('tpm_signature_invalid', 'signature does not verify');
  }
}
