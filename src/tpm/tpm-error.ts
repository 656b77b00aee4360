/**
 * Failures of the TPM adapter. The addon rejects with a structured object
 * `{code: 'ERR_TPM_RC', rc, layer, decoded, command}` (Tss2_RC_Decode on the native side);
 * nothing here is parsed back out of a message string.
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
