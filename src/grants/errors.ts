/**
 * Failures of the grant domain, one class per kind with a stable `code` (PROTOCOL.md §3).
 * Callers and tests match on `code`; each code, with its HTTP status, is a line of
 * src/shared/error-codes.ts. Messages never carry keys, signatures or request bodies.
 */
import {
  BadRequestError,
  errorKinds,
  GrantorError,
  UnavailableError,
  type ErrorOptions,
} from '../shared/errors.js';

/** Each kind's default message (callers may say more). */
const kind = errorKinds({
  runtime_not_active: 'the runtime is not active',
  session_not_live: 'no live attested session with this id',
  session_runtime_mismatch: 'the attested session belongs to another runtime',
  request_signature_invalid: 'the request signature does not verify with the session key',
  request_replayed: 'this requestId was already used by this runtime',
  request_stale: 'issuedAt is outside the allowed clock skew',
  grant_parent_not_found: 'the parent grant does not exist',
  grant_parent_expired: 'the parent grant has expired',
  grant_parent_revoked: 'the parent grant was revoked',
  grant_lineage_invalid: 'the parent grant is not part of a consistent lineage',
  grant_depth_exceeded: 'the lineage would be deeper than allowed',
  grant_width_exceeded: 'the parent grant has as many children as allowed',
  grant_not_found: 'no such grant',
  grant_already_redeemed: 'the grant was already redeemed',
  grant_audience_mismatch: 'the grant was issued for another audience',
  grant_expired: 'the grant has expired',
  grant_revoked: 'the grant was revoked',
  gateway_audience_forbidden: 'this gateway is not enrolled for that audience',
  grant_not_redeemed: 'the grant was not redeemed',
  grant_outcome_forbidden: 'only the gateway that redeemed the grant reports its outcome',
  grant_outcome_recorded: 'the outcome of this grant was already reported',
  revocation_snapshot_required:
    'the feed does not reach back to this sequence number: fetch the snapshot',
});

/** The body breaks a semantic rule the schema cannot express (ranges, one proof). */
export class GrantRequestInvalidError extends BadRequestError {}

/** The policy denied the request; `details.reasons` carries the policy's reasons. */
export class PolicyDeniedError extends GrantorError {
  constructor(reasons: readonly string[], details: Record<string, unknown>) {
    super('policy_denied', 'the policy denied this request', {
      details: { reasons: [...reasons], ...details },
    });
  }
}

/** The grant store cannot be read or written: fail closed. */
export class GrantStoreUnavailableError extends UnavailableError {
  constructor(options?: ErrorOptions) {
    super('grant_store_unavailable', 'the grant store is unavailable', options);
  }
}

/** The feed holds as many waiting subscribers as it may: try again later. */
export class RevocationFeedFullError extends UnavailableError {
  constructor(options?: ErrorOptions) {
    super(
      'revocation_feed_full',
      'the revocation feed has no room for another subscriber',
      options,
    );
  }
}

/** The runtime exists but is not `active` (pending, revoked). */
export class RuntimeNotActiveError extends kind('runtime_not_active') {}

/** Session mode: no live attested session with this id (unknown, ended or expired). */
export class SessionNotLiveError extends kind('session_not_live') {}

/** Session mode: the session belongs to another runtime. */
export class SessionRuntimeMismatchError extends kind('session_runtime_mismatch') {}

/** Session mode: the request is not signed by the session key. */
export class RequestSignatureInvalidError extends kind('request_signature_invalid') {}

/** The requestId was already used by this runtime. */
export class RequestReplayedError extends kind('request_replayed') {}

/** issuedAt is outside the allowed clock skew. */
export class RequestStaleError extends kind('request_stale') {}

export class GrantParentNotFoundError extends kind('grant_parent_not_found') {}
export class GrantParentExpiredError extends kind('grant_parent_expired') {}
export class GrantParentRevokedError extends kind('grant_parent_revoked') {}
/** The parent's stored lineage is inconsistent (root differs from its own parent's). */
export class GrantLineageInvalidError extends kind('grant_lineage_invalid') {}
/** The child would be deeper than the appliance-wide bound (policy may bound it lower). */
export class GrantDepthExceededError extends kind('grant_depth_exceeded') {}

/** The parent already has as many children as allowed (`maxChildren`, issue 18). */
export class GrantWidthExceededError extends kind('grant_width_exceeded') {}

export class GrantNotFoundError extends kind('grant_not_found') {}
export class GrantAlreadyRedeemedError extends kind('grant_already_redeemed') {}
export class GrantAudienceMismatchError extends kind('grant_audience_mismatch') {}
export class GrantExpiredError extends kind('grant_expired') {}
export class GrantRevokedError extends kind('grant_revoked') {}

/** The authenticated gateway is not enrolled for the audience it redeems for. */
export class GatewayAudienceForbiddenError extends kind('gateway_audience_forbidden') {}
/** An outcome for a grant nobody redeemed. */
export class GrantNotRedeemedError extends kind('grant_not_redeemed') {}
/** An outcome from a gateway other than the one that redeemed the grant. */
export class GrantOutcomeForbiddenError extends kind('grant_outcome_forbidden') {}
/** The outcome was already reported: once per grant. */
export class GrantOutcomeRecordedError extends kind('grant_outcome_recorded') {}

/**
 * The revocation feed cannot answer from `since`: older than what it keeps (pruned), or
 * beyond its head (another appliance, or a restored database). The gateway fetches the
 * snapshot and follows the feed from the snapshot's `seq`.
 */
export class RevocationSnapshotRequiredError extends kind('revocation_snapshot_required') {}
