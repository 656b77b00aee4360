/**
 * Failure kinds of the audit log. Codes are part of the wire contract (PROTOCOL.md
 * "Errors"); the HTTP status for each lives in src/shared/error-codes.ts.
 */
import { BadRequestError, GrantorError, UnavailableError } from '../shared/errors.js';

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

/** A log period the appliance does not have. */
