/**
 * Failures of the policy domain. Codes are part of the wire contract; the HTTP status for
 * each lives in src/shared/error-codes.ts.
 */
import { BadRequestError, kind, UnavailableError } from '../shared/errors.js';

/**
 * The engine cannot decide (no policy set loaded, wasm failure, an evaluation error in any
 * policy): the caller must fail closed and issue nothing.
 */
export class PolicyUnavailableError extends kind('policy_unavailable', UnavailableError) {}

/**
 * A policy set was refused at load (unreadable, does not parse, does not validate against
 * the schema, bad annotations). The previously active set, if any, stays active.
 */
export class PolicySetInvalidError extends kind('policy_set_invalid') {}

/** A decision request that does not satisfy the request model (a caller bug). */
export class PolicyRequestInvalidError extends BadRequestError {}

/** No policy set with this hash was ever kept in the policy archive. */
export class PolicySetNotFoundError extends kind('policy_set_not_found') {}
