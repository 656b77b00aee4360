/**
 * Why a gateway refuses a grant: one class per failure kind, each with a stable `code`.
 * Gateways match on `code` (or on the class), never on message text. All grant refusals
 * extend GrantRejectedError; failures of a dependency (JWKS, redemption endpoint) extend
 * UnavailableError: the gateway fails closed and does not execute.
 */
import { BadRequestError, GrantorError, UnavailableError } from '../shared/errors.js';

type Options = { cause?: unknown; details?: Record<string, unknown> };

/** Base of every refusal of a grant itself (as opposed to an unavailable dependency). */
export class GrantRejectedError extends GrantorError {}

/** Not a well-formed compact JWS with JSON header and claims as §3 describes. */
export class GrantMalformedError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_malformed', message, options);
  }
}

/** `alg` is not ES256 (including `none` and HMAC), or the key is not an ES256 key. */
export class GrantAlgInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_alg_invalid', message, options);
  }
}

/** `typ` is not `grant+jwt`. */
export class GrantTypInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_typ_invalid', message, options);
  }
}

/** No usable `kid`, or no key with that `kid` in the appliance's JWKS. */
export class GrantKidUnknownError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_kid_unknown', message, options);
  }
}

/** A header member that could point verification at another key or change its rules. */
export class GrantHeaderForbiddenError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_header_forbidden', message, options);
  }
}

/** The signature does not verify, or is not a canonical (low-S, non-zero) ES256 signature. */
export class GrantSignatureInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_signature_invalid', message, options);
  }
}

/**
 * A batch-signed grant's inclusion path does not lead from the grant to the signed root,
 * or does not have the length its position needs (docs/protocol.md §3).
 */
export class GrantBatchPathInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_batch_path_invalid', message, options);
  }
}

/** A batch-signed grant names a position outside its batch. */
export class GrantBatchPositionInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_batch_position_invalid', message, options);
  }
}

export class GrantExpiredError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_expired', message, options);
  }
}

/** `nbf` (or `iat`) lies in the future beyond the allowed clock skew. */
export class GrantNotYetValidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_not_yet_valid', message, options);
  }
}

export class GrantAudienceMismatchError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_audience_mismatch', message, options);
  }
}

export class GrantIssuerMismatchError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_issuer_mismatch', message, options);
  }
}

export class GrantActionMismatchError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_action_mismatch', message, options);
  }
}

export class GrantResourceMismatchError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_resource_mismatch', message, options);
  }
}

export class GrantParametersMismatchError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_parameters_mismatch', message, options);
  }
}

/** The proof of possession of the `cnf.jkt` key is missing, for another key, or invalid. */
export class GrantPopInvalidError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_pop_invalid', message, options);
  }
}

/** The appliance answered 409: someone redeemed this grant first. */
export class GrantAlreadyRedeemedError extends GrantRejectedError {
  constructor(grantId: string) {
    super('grant_already_redeemed', `grant ${grantId} was already redeemed`, {
      details: { grantId },
    });
  }
}

/** The appliance refused the redemption for another reason (unknown grant, wrong audience). */
export class GrantRedemptionRefusedError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_redemption_refused', message, options);
  }
}

/** The JWKS cannot be fetched or is not a valid key set: nothing can be verified. */
export class JwksUnavailableError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('jwks_unavailable', message, options);
  }
}

/** The redemption endpoint did not answer usefully (network, timeout, 5xx): do not execute. */
export class RedemptionUnavailableError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('redemption_unavailable', message, options);
  }
}

/**
 * Every outstanding proof-of-possession challenge slot is taken (PopChallenges'
 * `maxOutstanding`): the gateway refuses to issue more rather than grow without bound.
 */
export class PopChallengesExhaustedError extends UnavailableError {
  constructor(message = 'too many outstanding proof-of-possession challenges', options?: Options) {
    super('pop_challenges_exhausted', message, options);
  }
}

/** No grant was presented where the route table asks for one (gateway: 401). */
export class GrantMissingError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('grant_missing', message, options);
  }
}

/** No route of the gateway's route table names this method and path: nothing is forwarded. */
export class RouteNotFoundError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('route_not_found', message, options);
  }
}

/**
 * The request path is not in the one canonical form the gateway matches and forwards
 * (dot segments, empty segments, encoded slashes or backslashes, bad percent-encoding), so
 * the upstream could read another path than the one the grant was checked against.
 */
export class RequestPathInvalidError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('request_path_invalid', message, options);
  }
}

/** A query string the route's parameters do not cover, or a repeated query name. */
export class RequestQueryInvalidError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('request_query_invalid', message, options);
  }
}

/** A body the route's parameters do not cover, or a body that is not strict JSON. */
export class RequestBodyInvalidError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('request_body_invalid', message, options);
  }
}

/** The request's headers or body are past the gateway's limits. */
export class RequestTooLargeError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('request_too_large', message, options);
  }
}

/**
 * The route needs the request body for its parameters digest, but the body is not
 * available (nginx `auth_request` sends headers only): refused, never guessed.
 */
export class RouteBodyUnavailableError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('route_body_unavailable', message, options);
  }
}

/** The gateway's upstream did not answer (connection refused, reset, timed out). */
export class UpstreamUnavailableError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('upstream_unavailable', message, options);
  }
}

/** Text that is not JSON, nests too deep, or repeats a member name. */
export class StrictJsonError extends BadRequestError {
  readonly reason: 'syntax' | 'duplicate_key' | 'depth';
  constructor(reason: 'syntax' | 'duplicate_key' | 'depth', message: string) {
    super(message, { details: { reason } });
    this.reason = reason;
  }
}

/** The grant, or the grant above it (`lin.parent`) or its root (`lin.root`), was revoked. */
export class GrantRevokedError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_revoked', message, options);
  }
}

/** The runtime the grant was issued to (`sub`) was revoked. */
export class GrantRuntimeRevokedError extends GrantRejectedError {
  constructor(message: string, options?: Options) {
    super('grant_runtime_revoked', message, options);
  }
}

/**
 * The gateway's view of revocations was last confirmed current longer ago than its bound:
 * a revocation may have been missed, so no grant is accepted (fail closed).
 */
export class RevocationViewStaleError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('revocation_view_stale', message, options);
  }
}

/** A revocation snapshot that does not verify (signature, key, typ, iss, exp, shape). */
export class RevocationSnapshotInvalidError extends GrantorError {
  constructor(message: string, options?: Options) {
    super('revocation_snapshot_invalid', message, options);
  }
}

/** The appliance's revocation feed or snapshot could not be fetched or used. */
export class RevocationFeedUnavailableError extends UnavailableError {
  constructor(message: string, options?: Options) {
    super('revocation_feed_unavailable', message, options);
  }
}
