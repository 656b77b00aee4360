/**
 * Failure kinds of the audit domain, one class each: the log, its anchor and anchor key,
 * checkpoints, exports and bundles and their verifiers, the watcher. Codes are part of the
 * wire contract (docs/protocol.md "Errors"); the HTTP status for each lives in
 * src/shared/error-codes.ts.
 */
import {
  BadRequestError,
  errorKinds,
  type ErrorOptions,
  GrantorError,
  UnavailableError,
} from '../shared/errors.js';
import type { BundlePairProblem, BundleProblem } from './verify-bundle.js';
import type { ExportProblem } from './verify-export.js';
import type { WatchAlarm } from './watch.js';

const kind = errorKinds({ audit_not_provisioned: 'not provisioned: run `grantor provision`' });

/** A tree size, sequence number or range outside what the log (or its checkpoint) holds. */
export class AuditRangeError extends BadRequestError {}

/** A query's parameters do not make a query (a time that is not one, an empty range). */
export class AuditQueryInvalidError extends GrantorError {
  constructor(message: string, parameter: string, options?: ErrorOptions) {
    super('audit_query_invalid', message, { ...options, details: { parameter } });
  }
}

/** A tile or entry bundle that exists, with fewer hashes than the width asked for. */
export class AuditTileWidthError extends GrantorError {
  constructor(message: string, width: number, options?: ErrorOptions) {
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

/**
 * Two bundles, each valid on its own, are not consecutive periods of one log (`grantor
 * audit verify A B`): no line is bad, the relation between them is.
 */
export class BundlePairInvalidError extends GrantorError {
  readonly problem: BundlePairProblem;
  constructor(problem: BundlePairProblem, message: string) {
    super('audit_bundle_invalid', message, { details: { problem } });
    this.problem = problem;
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

/** The log cannot durably record and anchor right now (store or TPM failing): deny. */
export class AuditUnavailableError extends kind('audit_unavailable', UnavailableError) {}

/**
 * The store does not match the TPM anchor (rolled back, rewritten, truncated, from another
 * appliance) or the anchor indices are not the pinned ones: refuse until an operator acts.
 */
export class AuditRollbackError extends kind('audit_rollback_detected') {}

/**
 * No anchor is pinned in the operator configuration: the appliance was never provisioned.
 * Not a rollback: `grantor provision` is the remedy.
 */
export class AuditNotProvisionedError extends kind('audit_not_provisioned', UnavailableError) {}

/** An entry that does not exist (yet). */
export class AuditNotFoundError extends kind('not_found') {}

/** A log period after the current one (periods.ts): it does not exist (yet). */
export class AuditPeriodNotFoundError extends kind('audit_period_not_found') {}

/** Retention (retention.ts): the current period cannot be retired, only a frozen one. */
export class AuditPeriodCurrentError extends kind('audit_period_current') {}

/** Retention: this period's entries were retired already. */
export class AuditPeriodRetiredError extends kind('audit_period_retired') {}

/** Retention: the bundle written did not verify; nothing was deleted. */
export class AuditRetireBundleInvalidError extends kind('audit_retire_bundle_invalid') {}

/** A read of entries (or their bodies) that retention moved out: `details.bundleDigest`. */
export class AuditEntriesRetiredError extends kind('audit_entries_retired') {}

/** A tlog-tiles path that is not `<L>/<N>[.p/<W>]` in the C2SP canonical form. */
export class AuditTilePathError extends kind('audit_tile_path_invalid') {}

/** A tile or entry bundle with no hash in the checkpointed tree. */
export class AuditTileBeyondTreeError extends kind('audit_tile_beyond_tree') {}

export class NoteMalformedError extends kind('audit_note_malformed') {}

export class NoteSignatureError extends kind('audit_note_signature_invalid') {}

export class VerifierKeyError extends kind('audit_verifier_key_invalid') {}
