/**
 * Why a gateway refuses a grant: one class per failure kind, each with a stable `code`.
 * Gateways match on `code` (or on the class), never on message text. All grant refusals
 * extend GrantRejectedError; failures of a dependency (JWKS, redemption endpoint) extend
 * UnavailableError: the gateway fails closed and does not execute.
 */
import {
  BadRequestError,
  errorKinds,
  GrantorError,
  kind,
  UnavailableError,
} from '../shared/errors.js';

/** Base of every refusal of a grant itself (as opposed to an unavailable dependency). */
export class GrantRejectedError extends GrantorError {}

/** Kinds of refusal of the grant itself. */
const refusal = errorKinds({}, GrantRejectedError);
/** Kinds of failure of a dependency: the gateway fails closed. */
const unavailable = errorKinds(
  { pop_challenges_exhausted: 'too many outstanding proof-of-possession challenges' },
  UnavailableError,
);

/** The appliance answered 409: someone redeemed this grant first. */
export class GrantAlreadyRedeemedError extends GrantRejectedError {
  constructor(grantId: string) {
    super('grant_already_redeemed', `grant ${grantId} was already redeemed`, {
      details: { grantId },
    });
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

/** Not a well-formed compact JWS with JSON header and claims as §3 describes. */
export class GrantMalformedError extends refusal('grant_malformed') {}

/** `alg` is not ES256 (including `none` and HMAC), or the key is not an ES256 key. */
export class GrantAlgInvalidError extends refusal('grant_alg_invalid') {}

/** `typ` is not `grant+jwt`. */
export class GrantTypInvalidError extends refusal('grant_typ_invalid') {}

/** No usable `kid`, or no key with that `kid` in the appliance's JWKS. */
export class GrantKidUnknownError extends refusal('grant_kid_unknown') {}

/** A header member that could point verification at another key or change its rules. */
export class GrantHeaderForbiddenError extends refusal('grant_header_forbidden') {}

/** The signature does not verify, or is not a canonical (low-S, non-zero) ES256 signature. */
export class GrantSignatureInvalidError extends refusal('grant_signature_invalid') {}

/**
 * A batch-signed grant's inclusion path does not lead from the grant to the signed root,
 * or does not have the length its position needs (docs/protocol.md §3).
 */
export class GrantBatchPathInvalidError extends refusal('grant_batch_path_invalid') {}

/** A batch-signed grant names a position outside its batch. */
export class GrantBatchPositionInvalidError extends refusal('grant_batch_position_invalid') {}

export class GrantExpiredError extends refusal('grant_expired') {}

/** `nbf` (or `iat`) lies in the future beyond the allowed clock skew. */
export class GrantNotYetValidError extends refusal('grant_not_yet_valid') {}

export class GrantAudienceMismatchError extends refusal('grant_audience_mismatch') {}

export class GrantIssuerMismatchError extends refusal('grant_issuer_mismatch') {}

export class GrantActionMismatchError extends refusal('grant_action_mismatch') {}

export class GrantResourceMismatchError extends refusal('grant_resource_mismatch') {}

export class GrantParametersMismatchError extends refusal('grant_parameters_mismatch') {}

/** The proof of possession of the `cnf.jkt` key is missing, for another key, or invalid. */
export class GrantPopInvalidError extends refusal('grant_pop_invalid') {}

/** The appliance refused the redemption for another reason (unknown grant, wrong audience). */
export class GrantRedemptionRefusedError extends refusal('grant_redemption_refused') {}

/** The JWKS cannot be fetched or is not a valid key set: nothing can be verified. */
export class JwksUnavailableError extends unavailable('jwks_unavailable') {}

/** The redemption endpoint did not answer usefully (network, timeout, 5xx): do not execute. */
export class RedemptionUnavailableError extends unavailable('redemption_unavailable') {}

/**
 * Every outstanding proof-of-possession challenge slot is taken (PopChallenges'
 * `maxOutstanding`): the gateway refuses to issue more rather than grow without bound.
 */
export class PopChallengesExhaustedError extends unavailable('pop_challenges_exhausted') {}

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
export class UpstreamUnavailableError extends unavailable('upstream_unavailable') {}

/** The grant, or the grant above it (`lin.parent`) or its root (`lin.root`), was revoked. */
export class GrantRevokedError extends refusal('grant_revoked') {}

/** The runtime the grant was issued to (`sub`) was revoked. */
export class GrantRuntimeRevokedError extends refusal('grant_runtime_revoked') {}

/**
 * The gateway's view of revocations was last confirmed current longer ago than its bound:
 * a revocation may have been missed, so no grant is accepted (fail closed).
 */
export class RevocationViewStaleError extends unavailable('revocation_view_stale') {}

/** A revocation snapshot that does not verify (signature, key, typ, iss, exp, shape). */
export class RevocationSnapshotInvalidError extends kind('revocation_snapshot_invalid') {}

/** The appliance's revocation feed or snapshot could not be fetched or used. */
export class RevocationFeedUnavailableError extends unavailable('revocation_feed_unavailable') {}
