/**
 * The operator plane's configuration section: dual control (src/operators/approvals.ts)
 * and how refused operator attempts are audited (src/operators/refusals.ts). Composed into
 * AppConfig by src/shared/config.ts.
 */
import { integer, type FileKeys, type Source } from '../shared/config-parse.js';

export interface ApprovalSettings {
  /** M: distinct approvals each dual-controlled act needs (at least 2). */
  readonly required: number;
  /** How long an approval request stays open. */
  readonly requestTtlSeconds: number;
  /** How long one given approval stays usable. */
  readonly approvalTtlSeconds: number;
}

export interface RefusalAuditSettings {
  /** One audit entry per (address, route, reason) per window; repeats are counted into the next. */
  readonly windowSeconds: number;
  /** At most this many refusal entries per window in all; the rest are counted, not written. */
  readonly maxEntriesPerWindow: number;
}

export const OPERATORS_FILE_KEYS: FileKeys = {
  approvalsRequired: 'GRANTOR_APPROVALS_REQUIRED',
  approvalRequestTtlSeconds: 'GRANTOR_APPROVAL_REQUEST_TTL_SECONDS',
  approvalTtlSeconds: 'GRANTOR_APPROVAL_TTL_SECONDS',
  operatorRefusalWindowSeconds: 'GRANTOR_OPERATOR_REFUSAL_WINDOW_SECONDS',
  operatorRefusalMaxPerWindow: 'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW',
};

export function approvalSettings(src: Source): ApprovalSettings {
  return {
    // Below 2 there is no dual control left to configure.
    required: integer(src, 'GRANTOR_APPROVALS_REQUIRED', 2, 2, 16),
    requestTtlSeconds: integer(
      src,
      'GRANTOR_APPROVAL_REQUEST_TTL_SECONDS',
      86_400,
      60,
      30 * 86_400,
    ),
    approvalTtlSeconds: integer(src, 'GRANTOR_APPROVAL_TTL_SECONDS', 3600, 60, 7 * 86_400),
  };
}

export function refusalAuditSettings(src: Source): RefusalAuditSettings {
  return {
    windowSeconds: integer(src, 'GRANTOR_OPERATOR_REFUSAL_WINDOW_SECONDS', 60, 1, 86_400),
    maxEntriesPerWindow: integer(src, 'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW', 100, 1, 100_000),
  };
}
