/**
 * Failure kinds of the audit domain, one class each: the log, its anchor and anchor key,
 * checkpoints, exports and bundles and their verifiers, the watcher. Codes are part of the
 * wire contract (docs/protocol.md "Errors"); the HTTP status for each lives in
 * src/shared/error-codes.ts.
 */
import { BadRequestError, GrantorError, UnavailableError } from '../shared/errors.js';
import type { BundleProblem } from './verify-bundle.js';
import type { ExportProblem } from './verify-export.js';
import type { WatchAlarm } from './watch.js';

type Options = { cause?: unknown; details?: Record<string, unknown> };

/** The log cannot durably record and anchor right now (store or TPM failing): deny. */
export class AuditUnavailableError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('audit_unavailable', message, options);
  }
}

/**
 * The store does not match the TPM anchor (rolled back, rewritten, truncated, from another
 * appliance) or the anchor indices are not the pinned ones: refuse until an operator acts.
 */
export class AuditRollbackError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_rollback_detected', message, options);
  }
}

/**
 * No anchor is pinned in the operator configuration: the appliance was never provisioned.
 * Not a rollback: `grantor provision` is the remedy.
 */
export class AuditNotProvisionedError extends UnavailableError {
  constructor(message = 'not provisioned: run `grantor provision`', options?: Options) {
    super('audit_not_provisioned', message, options);
  }
}

/** A tree size, sequence number or range outside what the log (or its checkpoint) holds. */
export class AuditRangeError extends BadRequestError {}

/** An entry that does not exist (yet). */
export class AuditNotFoundError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('not_found', message, options);
  }
}

/** A log period after the current one (periods.ts): it does not exist (yet). */
export class AuditPeriodNotFoundError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_period_not_found', message, options);
  }
}

/** Retention (retention.ts): the current period cannot be retired, only a frozen one. */
export class AuditPeriodCurrentError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_period_current', message, options);
  }
}

/** Retention: this period's entries were retired already. */
export class AuditPeriodRetiredError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_period_retired', message, options);
  }
}

/** Retention: the bundle written did not verify; nothing was deleted. */
export class AuditRetireBundleInvalidError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_retire_bundle_invalid', message, options);
  }
}

/** A read of entries (or their bodies) that retention moved out: `details.bundleDigest`. */
export class AuditEntriesRetiredError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_entries_retired', message, options);
  }
}

/** A query's parameters do not make a query (a time that is not one, an empty range). */
export class AuditQueryInvalidError extends GrantorError {
  constructor(message: string, parameter: string, options?: Options) {
    super('audit_query_invalid', message, { ...options, details: { parameter } });
  }
}

/** A tlog-tiles path that is not `<L>/<N>[.p/<W>]` in the C2SP canonical form. */
export class AuditTilePathError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_tile_path_invalid', message, options);
  }
}

/** A tile or entry bundle with no hash in the checkpointed tree. */
export class AuditTileBeyondTreeError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('audit_tile_beyond_tree', message, options);
  }
}

/** A tile or entry bundle that exists, with fewer hashes than the width asked for. */
export class AuditTileWidthError extends GrantorError {
  constructor(message: string, width: number, options?: Options) {
    super('audit_tile_width_mismatch', message, { ...options, details: { width } });
  }
}

/**
 * A TPM command failed. `retryable` is true only for response codes after which the
 * command is known NOT to have executed (TPM_RC_NV_RATE, TPM_RC_RETRY, TPM_RC_YIELDED,
 * TPM_RC_TESTING); an ambiguous failure (lost connection) is not retryable and sends the
 * log through its reconciliation, which reads the TPM to learn what happened.
 */
export class AnchorError extends GrantorError {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super('tpm_unavailable', message, options);
    this.retryable = retryable;
  }
}

/** The anchor write key is missing, duplicated or unsafe on its token. */
export class AnchorKeyError extends GrantorError {
  constructor(
    readonly reason: 'anchor_key_missing' | 'anchor_key_ambiguous' | 'anchor_key_unsafe',
    message: string,
  ) {
    super(reason === 'anchor_key_missing' ? 'hsm_key_missing' : 'hsm_key_unsafe', message, {
      details: { reason },
    });
  }
}

/** Provisioning found the TPM in a state it must not adopt; `reason` says which. */
export class AnchorProvisionError extends GrantorError {
  constructor(
    reason: 'nv_index_foreign' | 'anchor_in_use' | 'anchor_owner_written',
    message: string,
    index: number,
  ) {
    super('audit_provision_refused', message, {
      details: { reason, index: `0x${index.toString(16)}` },
    });
  }
}

/** The range asked is larger than one bundle may cover: ask for several. */
export class AuditExportRangeError extends GrantorError {
  constructor(message: string, max: number) {
    super('audit_export_range_too_large', message, { details: { max } });
  }
}

export class NoteMalformedError extends GrantorError {
  constructor(message: string) {
    super('audit_note_malformed', message);
  }
}

export class NoteSignatureError extends GrantorError {
  constructor(message: string) {
    super('audit_note_signature_invalid', message);
  }
}

export class VerifierKeyError extends GrantorError {
  constructor(message: string) {
    super('audit_verifier_key_invalid', message);
  }
}

/** The bundle does not verify; `line` (1-based) is the first bad record. */
export class BundleInvalidError extends GrantorError {
  readonly problem: BundleProblem;
  readonly line: number;
  constructor(
    problem: BundleProblem,
    line: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('audit_bundle_invalid', `line ${line}: ${message}`, {
      ...(options?.cause === undefined ? {} : { cause: options.cause }),
      details: { problem, line },
    });
    this.problem = problem;
    this.line = line;
  }
}

/** The export does not verify; `index` is the first bad entry where one can be named. */
export class ExportInvalidError extends GrantorError {
  readonly problem: ExportProblem;
  readonly index: number | undefined;
  constructor(
    problem: ExportProblem,
    message: string,
    index?: number,
    options?: { cause?: unknown },
  ) {
    super('audit_export_invalid', message, {
      ...(options?.cause === undefined ? {} : { cause: options.cause }),
      details: index === undefined ? { problem } : { problem, index },
    });
    this.problem = problem;
    this.index = index;
  }
}

/** An inconsistency found by a visit; `code` is `audit_watch_<alarm>`. */
export class WatchAlarmError extends GrantorError {
  readonly alarm: WatchAlarm;
  /**
   * The signed note that contradicts the state (with the state's own note it is the
   * evidence of a fork: two notes the log's key signed), and the proof that failed.
   */
  readonly evidence: { readonly note?: string; readonly proof?: unknown } | undefined;
  constructor(
    alarm: WatchAlarm,
    message: string,
    options?: { cause?: unknown; evidence?: { note?: string; proof?: unknown } },
  ) {
    super(
      `audit_watch_${alarm}`,
      message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.alarm = alarm;
    this.evidence = options?.evidence;
  }
}

/** The state file cannot be used; never reset by the watcher (the auditor decides). */
export class WatchStateError extends GrantorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('audit_watch_state_invalid', message, options);
  }
}
