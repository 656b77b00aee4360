/**
 * Failures of the operator plane, one class per kind, each with a stable `code` (the HTTP
 * status for each lives in src/shared/error-codes.ts). Messages never carry a token.
 */
import { GrantorError } from '../shared/errors.js';

type Options = { cause?: unknown; details?: Record<string, unknown> };

/** No usable operator credential: missing, unknown, expired, revoked or malformed. */
export class UnauthenticatedError extends GrantorError {
  constructor(message = 'an operator credential is required', options?: Options) {
    super('unauthenticated', message, options);
  }
}

/** The credential is valid but its role may not do this (or it is the wrong kind of actor). */
export class ForbiddenError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('forbidden', message, options);
  }
}

/** No such operator token (CLI revoke). */
export class OperatorTokenNotFoundError extends GrantorError {
  constructor(id: string) {
    super('operator_token_not_found', `no operator token ${id}`, { details: { id } });
  }
}

/** The act needs more distinct, valid approvals than it has. */
export class ApprovalRequiredError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_required', message, options);
  }
}

/** The approval request (or every approval it holds) has expired. */
export class ApprovalExpiredError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_expired', message, options);
  }
}

/** The approvals were already used for one act: each approval is single-use. */
export class ApprovalReusedError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_reused', message, options);
  }
}

/** The same actor tried to approve twice: approvals must come from distinct people. */
export class ApprovalDuplicateActorError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_duplicate_actor', message, options);
  }
}

/** No approval request with that id. */
export class ApprovalNotFoundError extends GrantorError {
  constructor(id: string) {
    super('approval_not_found', `no approval request ${id}`, { details: { id } });
  }
}

/** A stored operator record does not parse: refuse rather than guess. */
export class OperatorStoreCorruptError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('operator_store_corrupt', message, options);
  }
}

/** No person with that id in the operator registry. */
export class OperatorNotFoundError extends GrantorError {
  constructor(id: string) {
    super('operator_not_found', `no operator ${id}`, { details: { id } });
  }
}

/** An e-mail address (a certificate identifier) already names another person. */
export class OperatorIdentifierConflictError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('operator_identifier_conflict', message, options);
  }
}

/** The requester of an approval request may not approve it (dual control needs others). */
export class ApprovalOwnRequestError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_own_request', message, options);
  }
}

/** An open request for the same act and parameters exists: approve that one. */
export class ApprovalRequestOpenError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_request_open', message, options);
  }
}

/** The person already has the most open approval requests allowed. */
export class ApprovalRequestLimitError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('approval_request_limit', message, options);
  }
}

/**
 * No usable gateway credential on a gateway route (redeem, outcome): missing, not a
 * gateway token, unknown, expired or revoked. One code for all, so a caller learns nothing
 * about which ids exist.
 */
export class GatewayUnauthenticatedError extends GrantorError {
  constructor(message = 'a gateway credential is required', options?: Options) {
    super('gateway_unauthenticated', message, options);
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
  constructor(options?: Options) {
    super('gateway_store_unavailable', 'the gateway store is unavailable', options);
  }
}
