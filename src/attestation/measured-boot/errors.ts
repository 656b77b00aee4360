/**
 * Failure kinds of measured boot: event logs and IMA lists that cannot be parsed, are too
 * large, or do not replay to the quoted PCRs. One class per kind, each with its stable
 * `code` (statuses in src/shared/error-codes.ts). Messages name the structure, field, offset,
 * event index, bank and PCR, never the bytes.
 */
import { GrantorError } from '../../shared/errors.js';

export const MEASURED_BOOT_CODES = [
  'event_log_malformed',
  'event_log_required',
  'ima_log_required',
  'event_log_too_large',
  'event_log_mismatch',
  'ima_log_malformed',
  'ima_log_too_large',
  'ima_log_mismatch',
  'ima_log_offset_invalid',
  'measured_boot_violation',
] as const;

export type MeasuredBootCode = (typeof MEASURED_BOOT_CODES)[number];

/** Why bytes are not a well-formed log: the same four kinds as the TPM unmarshalling. */
export type MalformedReason = 'truncated' | 'oversized' | 'trailing' | 'invalid';

/** Where a parse failed. `event` is the index of the event or entry being read. */
export interface LogLocation {
  readonly structure: string;
  readonly field: string;
  readonly offset: number;
  readonly event: number | undefined;
}

abstract class MeasuredBootError extends GrantorError {
  declare readonly code: MeasuredBootCode;
}

/** Bytes that are not a log of their kind; `reason` says which of the four failures. */
export class LogMalformedError extends MeasuredBootError {
  readonly reason: MalformedReason;
  readonly location: LogLocation;

  constructor(
    code: 'event_log_malformed' | 'ima_log_malformed',
    reason: MalformedReason,
    at: LogLocation,
    message: string,
  ) {
    const where = at.event === undefined ? '' : ` (event ${at.event})`;
    super(code, `${at.structure}.${at.field} at offset ${at.offset}${where}: ${message}`, {
      details: {
        reason,
        structure: at.structure,
        field: at.field,
        offset: at.offset,
        ...(at.event === undefined ? {} : { event: at.event }),
      },
    });
    this.reason = reason;
    this.location = at;
  }
}

/** A log larger than the configured limit (bytes, events or entries): refused before parsing. */
export class LogTooLargeError extends MeasuredBootError {
  constructor(
    code: 'event_log_too_large' | 'ima_log_too_large',
    what: 'bytes' | 'events',
    size: number,
    limit: number,
  ) {
    super(code, `${size} ${what} exceed the limit of ${limit}`, {
      details: { what, size, limit },
    });
  }
}

/** Replaying the event log does not give the quoted value of a PCR. */
export class EventLogMismatchError extends MeasuredBootError {
  constructor(bank: string, pcr: number, reason = 'replayed value differs from the quoted value') {
    super('event_log_mismatch', `event log does not replay to PCR ${bank}:${pcr}: ${reason}`, {
      details: { bank, pcr },
    });
  }
}

/** The IMA list does not replay to the quoted PCR, or an entry's template hash is wrong. */
export class ImaLogMismatchError extends MeasuredBootError {
  constructor(message: string, details: Record<string, unknown>) {
    super('ima_log_mismatch', message, { details });
  }
}

/** The IMA entries sent do not start where the verifier's last verified state ends. */
export class ImaLogOffsetError extends MeasuredBootError {
  constructor(expected: number, got: number) {
    super('ima_log_offset_invalid', `IMA entries must start at ${expected}, not ${got}`, {
      details: { expected, got },
    });
  }
}

/** The reference policy needs an event log (or IMA list) and the attestation has none. */
export class MeasuredBootRequiredError extends MeasuredBootError {
  constructor(code: 'event_log_required' | 'ima_log_required') {
    super(
      code,
      code === 'event_log_required'
        ? 'the reference policy requires the TCG event log with the quote'
        : 'the reference policy requires the IMA measurement list with the quote',
    );
  }
}

/**
 * Quote mode: the logs replayed to the quote, and the policy's rules over their events
 * found something (an attestation answers `untrusted` with these reasons instead).
 */
export class MeasuredBootViolationError extends MeasuredBootError {
  constructor(reasons: readonly string[]) {
    super('measured_boot_violation', 'the measured boot does not satisfy the reference policy', {
      details: { reasons: [...reasons] },
    });
  }
}
