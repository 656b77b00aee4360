/**
 * Why a gateway refuses a grant: one class per failure kind, each with a stable `code`.
 * Gateways match on `code` (or on the class), never on message text. All grant refusals
 * extend GrantRejectedError; failures of a dependency (JWKS, redemption endpoint) extend
 * UnavailableError: the gateway fails closed and does not execute.
 */
import { BadRequestError, errorKinds, GrantorError, UnavailableError } from '../shared/errors.js';

const kind = errorKinds({
  pop_challenges_exhausted: 'too many outstanding proof-of-possession challenges',
});

/** Base of every refusal of a grant itself (as opposed to an unavailable dependency). */
export class GrantRejectedError extends GrantorError {}

/** Not a well-formed compact JWS with JSON header and claims as §3 describes. */
export class GrantMalformedError extends kind('grant_malformed', GrantRejectedError) {}

/** `alg` is not ES256 (including `none` and HMAC), or the key is not an ES256 key. */
export class GrantAlgInvalidError extends kind('grant_alg_invalid', GrantRejectedError) {}

/** `typ` is not `grant+jwt`. */
export class GrantTypInvalidError extends kind('grant_typ_invalid', GrantRejectedError) {}

/** No usable `kid`, or no key with that `kid` in the appliance's JWKS. */
export class GrantKidUnknownError extends kind('grant_kid_unknown', GrantRejectedError) {}

/** A header member that could point verification at another key or change its rules. */
export class GrantHeaderForbiddenError extends kind('grant_header_forbidden', GrantRejectedError) {}

/** The signature does not verify, or is not a canonical (low-S, non-zero) ES256 signature. */
export class GrantSignatureInvalidError extends kind(
  'grant_signature_invalid',
  GrantRejectedError,
) {}

/**
 * A batch-signed grant's inclusion path does not lead from the grant to the signed root,
 * or does not have the length its position needs (docs/protocol.md §3).
 */
export class GrantBatchPathInvalidError extends kind(
  'grant_batch_path_invalid',
  GrantRejectedError,
) {}

/** A batch-signed grant names a position outside its batch. */
export class GrantBatchPositionInvalidError extends kind(
  'grant_batch_position_invalid',
  GrantRejectedError,
) {}

export class GrantExpiredError extends kind('grant_expired', GrantRejectedError) {}

/** `nbf` (or `iat`) lies in the future beyond the allowed clock skew. */
export class GrantNotYetValidError extends kind('grant_not_yet_valid', GrantRejectedError) {}

export class GrantAudienceMismatchError extends kind(
  'grant_audience_mismatch',
  GrantRejectedError,
) {}

export class GrantIssuerMismatchError extends kind('grant_issuer_mismatch', GrantRejectedError) {}

export class GrantActionMismatchError extends kind('grant_action_mismatch', GrantRejectedError) {}

export class GrantResourceMismatchError extends kind(
  'grant_resource_mismatch',
  GrantRejectedError,
) {}

export class GrantParametersMismatchError extends kind(
  'grant_parameters_mismatch',
  GrantRejectedError,
) {}

/** The proof of possession of the `cnf.jkt` key is missing, for another key, or invalid. */
export class GrantPopInvalidError extends kind('grant_pop_invalid', GrantRejectedError) {}

/** The appliance answered 409: someone redeemed this grant first. */
export class GrantAlreadyRedeemedError extends GrantRejectedError {
  constructor(grantId: string) {
    super('grant_already_redeemed', `grant ${grantId} was already redeemed`, {
      details: { grantId },
    });
  }
}

/** The appliance refused the redemption for another reason (unknown grant, wrong audience). */
export class GrantRedemptionRefusedError extends kind(
  'grant_redemption_refused',
  GrantRejectedError,
) {}

/** The JWKS cannot be fetched or is not a valid key set: nothing can be verified. */
export class JwksUnavailableError extends kind('jwks_unavailable', UnavailableError) {}

/** The redemption endpoint did not answer usefully (network, timeout, 5xx): do not execute. */
export class RedemptionUnavailableError extends kind('redemption_unavailable', UnavailableError) {}

/**
 * Every outstanding proof-of-possession challenge slot is taken (PopChallenges'
 * `maxOutstanding`): the gateway refuses to issue more rather than grow without bound.
 */
export class PopChallengesExhaustedError extends kind(
  'pop_challenges_exhausted',
  UnavailableError,
) {}

/** No grant was presented where the route table asks for one (gateway: 401). */
export class GrantMissingError extends kind('grant_missing') {}

/** No route of the gateway's route table names this method and path: nothing is forwarded. */
export class RouteNotFoundError extends kind('route_not_found') {}

/**
 * The request path is not in the one canonical form the gateway matches and forwards
 * (dot segments, empty segments, encoded slashes or backslashes, bad percent-encoding), so
 * the upstream could read another path than the one the grant was checked against.
 */
export class RequestPathInvalidError extends kind('request_path_invalid') {}

/** A query string the route's parameters do not cover, or a repeated query name. */
export class RequestQueryInvalidError extends kind('request_query_invalid') {}

/** A body the route's parameters do not cover, or a body that is not strict JSON. */
export class RequestBodyInvalidError extends kind('request_body_invalid') {}

/** The request's headers or body are past the gateway's limits. */
export class RequestTooLargeError extends kind('request_too_large') {}

/**
 * The route needs the request body for its parameters digest, but the body is not
 * available (nginx `auth_request` sends headers only): refused, never guessed.
 */
export class RouteBodyUnavailableError extends kind('route_body_unavailable') {}

/** The gateway's upstream did not answer (connection refused, reset, timed out). */
export class UpstreamUnavailableError extends kind('upstream_unavailable', UnavailableError) {}

/** Text that is not JSON, nests too deep, or repeats a member name. */
export class StrictJsonError extends BadRequestError {
  readonly reason: 'syntax' | 'duplicate_key' | 'depth';
  constructor(reason: 'syntax' | 'duplicate_key' | 'depth', message: string) {
    super(message, { details: { reason } });
    this.reason = reason;
  }
}

/** The grant, or the grant above it (`lin.parent`) or its root (`lin.root`), was revoked. */
export class GrantRevokedError extends kind('grant_revoked', GrantRejectedError) {}

/** The runtime the grant was issued to (`sub`) was revoked. */
export class GrantRuntimeRevokedError extends kind('grant_runtime_revoked', GrantRejectedError) {}

/**
 * The gateway's view of revocations was last confirmed current longer ago than its bound:
 * a revocation may have been missed, so no grant is accepted (fail closed).
 */
export class RevocationViewStaleError extends kind('revocation_view_stale', UnavailableError) {}

/** A revocation snapshot that does not verify (signature, key, typ, iss, exp, shape). */
export class RevocationSnapshotInvalidError extends kind('revocation_snapshot_invalid') {}

/** The appliance's revocation feed or snapshot could not be fetched or used. */
export class RevocationFeedUnavailableError extends kind(
  'revocation_feed_unavailable',
  UnavailableError,
) {}
