/**
 * Failures of the operator plane, one class per kind, each with a stable `code` (the HTTP
 * status for each lives in src/shared/error-codes.ts). Messages never carry a token.
 */
import { errorKinds, type ErrorOptions, GrantorError } from '../shared/errors.js';

const kind = errorKinds({
  unauthenticated: 'an operator credential is required',
  gateway_unauthenticated: 'a gateway credential is required',
});

/** No such operator token (CLI revoke). */
export class OperatorTokenNotFoundError extends GrantorError {
  constructor(id: string) {
    super('operator_token_not_found', `no operator token ${id}`, { details: { id } });
  }
}

/** No approval request with that id. */
export class ApprovalNotFoundError extends GrantorError {
  constructor(id: string) {
    super('approval_not_found', `no approval request ${id}`, { details: { id } });
  }
}

/** No person with that id in the operator registry. */
export class OperatorNotFoundError extends GrantorError {
  constructor(id: string) {
    super('operator_not_found', `no operator ${id}`, { details: { id } });
  }
}

/** No enrolled gateway with that id. */
export class GatewayNotFoundError extends GrantorError {
  constructor(id: string) {
    super('gateway_not_found', `no gateway ${id}`, { details: { id } });
  }
}

/**
 * The gateway store could not be read or written (LevelDB failing): 503, never 500, so a
 * gateway retries instead of taking the refusal for a verdict on its credential.
 */
export class GatewayStoreUnavailableError extends GrantorError {
  constructor(options?: ErrorOptions) {
    super('gateway_store_unavailable', 'the gateway store is unavailable', options);
  }
}

/** No usable operator credential: missing, unknown, expired, revoked or malformed. */
export class UnauthenticatedError extends kind('unauthenticated') {}

/** The credential is valid but its role may not do this (or it is the wrong kind of actor). */
export class ForbiddenError extends kind('forbidden') {}

/** The act needs more distinct, valid approvals than it has. */
export class ApprovalRequiredError extends kind('approval_required') {}

/** The approval request (or every approval it holds) has expired. */
export class ApprovalExpiredError extends kind('approval_expired') {}

/** The approvals were already used for one act: each approval is single-use. */
export class ApprovalReusedError extends kind('approval_reused') {}

/** The same actor tried to approve twice: approvals must come from distinct people. */
export class ApprovalDuplicateActorError extends kind('approval_duplicate_actor') {}

/** A stored operator record does not parse: refuse rather than guess. */
export class OperatorStoreCorruptError extends kind('operator_store_corrupt') {}

/** An e-mail address (a certificate identifier) already names another person. */
export class OperatorIdentifierConflictError extends kind('operator_identifier_conflict') {}

/** The requester of an approval request may not approve it (dual control needs others). */
export class ApprovalOwnRequestError extends kind('approval_own_request') {}

/** An open request for the same act and parameters exists: approve that one. */
export class ApprovalRequestOpenError extends kind('approval_request_open') {}

/** The person already has the most open approval requests allowed. */
export class ApprovalRequestLimitError extends kind('approval_request_limit') {}

/**
 * No usable gateway credential on a gateway route (redeem, outcome): missing, not a
 * gateway token, unknown, expired or revoked. One code for all, so a caller learns nothing
 * about which ids exist.
 */
export class GatewayUnauthenticatedError extends kind('gateway_unauthenticated') {}
