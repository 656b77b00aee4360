/**
 * Offline verification of a grant (PROTOCOL.md §3) before the action executes: a flat list
 * of guard clauses in a fixed order, each failing with its own error class. Header and
 * claims are parsed here with a parser that refuses duplicate member names, before any key
 * is fetched and before jose checks the signature; the claims used are the ones parsed
 * here, over the very bytes jose verified.
 */
import { timingSafeEqual } from 'node:crypto';
import { compactVerify, errors as joseErrors } from 'jose';
import { ConfigError } from '../shared/errors.js';
import type { GrantClaims } from '../shared/grant-claims.js';
import { BATCH_ALG, verifyBatchProof } from './batch.js';
import { parametersDigest } from './digest.js';
import { decodeBase64url, decodeUtf8, es256SignatureProblem } from './encoding.js';
import {
  GrantActionMismatchError,
  GrantAlgInvalidError,
  GrantAudienceMismatchError,
  GrantExpiredError,
  GrantHeaderForbiddenError,
  GrantIssuerMismatchError,
  GrantKidUnknownError,
  GrantMalformedError,
  GrantNotYetValidError,
  GrantParametersMismatchError,
  GrantPopInvalidError,
  GrantResourceMismatchError,
  GrantSignatureInvalidError,
  GrantTypInvalidError,
} from './errors.js';
import type { KeySource } from './jwks.js';
import { verifyPop, type PopChallenges, type PopProof } from './pop.js';
import type { Redeemer, RedemptionOutcome } from './redeem.js';
import type { RevocationCheck } from './revocations.js';
import { parseStrictJson, type JsonValue } from './strict-json.js';

export type { GrantClaims };

export interface VerifiedGrant {
  readonly grantId: string;
  readonly runtimeId: string;
  readonly kid: string;
  /** `jws`: an ES256 JWS; `batch`: batch-signed (its position and batch size). */
  readonly form: 'jws' | { readonly batch: { readonly index: number; readonly size: number } };
  readonly claims: GrantClaims;
  /** The `cnf` key was proven (a PoP was supplied and verified). */
  readonly possessionProven: boolean;
  /** The grant was redeemed online by this call. */
  readonly redeemed: boolean;
}

/** The execution about to run; the grant must name exactly this. */
export type ExpectedExecution = {
  readonly action: string;
  readonly resource: string;
} & (
  | { readonly parametersDigest: string; readonly parameters?: never }
  | { readonly parameters: unknown; readonly parametersDigest?: never }
);

export interface GrantVerifierConfig {
  /** The appliance id (`iss`). */
  readonly issuer: string;
  /** This gateway's audience (`aud`). */
  readonly audience: string;
  /** Keys: a JwksClient (fetched and cached) or a static key source. */
  readonly keys: KeySource;
  /** Allowed clock skew for exp/nbf/iat, 0..300 s. Default 30. */
  readonly clockToleranceSeconds?: number;
  /** Clock in epoch milliseconds. Default Date.now. */
  readonly now?: () => number;
  /** Online redemption; used when a verification asks for it. */
  readonly redeemer?: Redeemer;
  /** Longest compact JWS accepted, in characters. Default 16384. */
  readonly maxTokenLength?: number;
  /**
   * What this gateway knows of revocations (a RevocationView, revocations.ts): consulted
   * after every offline check and before proof of possession and redemption.
   */
  readonly revocations?: RevocationCheck;
  /**
   * The challenges this gateway issued. With them, a proof's challenge is spent here, once
   * the proof verified and before redemption, for the client it was issued to: a refused
   * grant or proof leaves it unspent, and of two proofs on one challenge one passes. Without
   * them the caller keeps each challenge single use.
   */
  readonly challenges?: PopChallenges;
}

export interface VerifyGrantRequest {
  readonly execution: ExpectedExecution;
  /**
   * Require and check a proof of possession of the `cnf.jkt` key; `client` is who asked
   * for the challenge (`PopChallenges.issue(client)`).
   */
  readonly pop?: { readonly challenge: string; readonly proof: PopProof; readonly client?: string };
  /** Redeem online after every offline check passed (needs `redeemer`). */
  readonly redeem?: boolean | RedemptionOutcome;
}

export type VerifyGrantOptions = GrantVerifierConfig & VerifyGrantRequest;

const ALLOWED_HEADER = new Set(['alg', 'typ', 'kid']);
// Members that would let the token choose its own key or change how it is processed.
const FORBIDDEN_HEADER = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip'];
const KID = /^[A-Za-z0-9._~-]{1,128}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const HEX = /^[0-9a-f]+$/;
const MAX_SKEW = 300;

type JsonObject = { [key: string]: JsonValue };

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decodeSegment(segment: string, what: string): JsonObject {
  const bytes = decodeBase64url(segment);
  const text = bytes === undefined ? undefined : decodeUtf8(bytes);
  if (text === undefined) throw new GrantMalformedError(`the ${what} is not base64url UTF-8`);
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (cause) {
    throw new GrantMalformedError(`the ${what} is not strict JSON`, { cause });
  }
  if (!isObject(value)) throw new GrantMalformedError(`the ${what} is not a JSON object`);
  return value;
}

function str(v: JsonValue | undefined): v is string {
  return typeof v === 'string' && v !== '';
}

function count(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Checks the shape of every §3 claim; the values are checked afterwards. */
function claimsOf(p: JsonObject): GrantClaims {
  const bad = (claim: string): never => {
    throw new GrantMalformedError(`claim ${claim} is missing or has the wrong type`);
  };
  const { iss, sub, aud, iat, nbf, exp, jti, act, att, cnf, lin, pol, aud_seq, aud_hash } = p;
  if (!str(iss)) bad('iss');
  if (!str(sub)) bad('sub');
  // §3 issues `aud` as one string; an array would widen the audience.
  if (!str(aud)) bad('aud');
  if (!count(iat)) bad('iat');
  if (!count(nbf)) bad('nbf');
  if (!count(exp)) bad('exp');
  if (!str(jti)) bad('jti');
  if (!isObject(act) || !str(act.action) || !str(act.resource)) bad('act');
  if (
    !isObject(act) ||
    typeof act.parametersDigest !== 'string' ||
    !HEX64.test(act.parametersDigest)
  ) {
    bad('act.parametersDigest');
  }
  if (
    !isObject(att) ||
    typeof att.akName !== 'string' ||
    typeof att.pcrDigest !== 'string' ||
    !count(att.resetCount) ||
    !count(att.restartCount) ||
    !(att.attestationId === null || typeof att.attestationId === 'string')
  ) {
    bad('att');
  }
  if (!isObject(cnf) || !str(cnf.jkt)) bad('cnf');
  if (
    !isObject(lin) ||
    !(lin.parent === null || str(lin.parent)) ||
    !str(lin.root) ||
    !count(lin.depth)
  ) {
    bad('lin');
  }
  if (typeof pol !== 'string' || !HEX64.test(pol)) bad('pol');
  if (!count(aud_seq)) bad('aud_seq');
  if (typeof aud_hash !== 'string' || !HEX.test(aud_hash)) bad('aud_hash');
  return p as unknown as GrantClaims;
}

/** A lone surrogate (matched by code point under the `u` flag; a paired one is not). */
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Equal as UTF-16 code units, and only well-formed text is ever equal. Comparing UTF-8
 * encodings was wrong: the encoder turns every lone surrogate into U+FFFD, so a grant for
 * `ticket:\uFFFD` matched an execution on `ticket:\uD800`.
 */
function sameText(a: string, b: string): boolean {
  if (LONE_SURROGATE.test(a) || LONE_SURROGATE.test(b)) return false;
  const x = Buffer.from(a, 'utf16le');
  const y = Buffer.from(b, 'utf16le');
  return x.length === y.length && timingSafeEqual(x, y);
}

function checkConfig(config: GrantVerifierConfig): number {
  if (config.issuer === '') throw new ConfigError('gateway.issuer', 'is required');
  if (config.audience === '') throw new ConfigError('gateway.audience', 'is required');
  if (LONE_SURROGATE.test(config.issuer) || LONE_SURROGATE.test(config.audience)) {
    throw new ConfigError('gateway', 'issuer and audience must be well-formed Unicode text');
  }
  const skew = config.clockToleranceSeconds ?? 30;
  if (!Number.isFinite(skew) || skew < 0 || skew > MAX_SKEW) {
    throw new ConfigError('gateway.clockToleranceSeconds', `must be in [0, ${MAX_SKEW}]`);
  }
  return skew;
}

/**
 * Verifies a grant for one execution. Resolves with the verified grant, or rejects with
 * one of the Grant*Error classes (or JwksUnavailableError / RedemptionUnavailableError):
 * the gateway must not execute on any rejection.
 */
export async function verifyGrant(
  jws: unknown,
  options: VerifyGrantOptions,
): Promise<VerifiedGrant> {
  const skew = checkConfig(options);
  const now = (options.now ?? Date.now)() / 1000;
  // Snapshot the untrusted input before the first await.
  if (typeof jws !== 'string') throw new GrantMalformedError('the grant is not a string');
  const token = jws;
  const execution = {
    action: options.execution.action,
    resource: options.execution.resource,
    // The digest is computed now: parameters mutated during verification do not count.
    parametersDigest:
      options.execution.parametersDigest === undefined
        ? digestOf(options.execution.parameters)
        : options.execution.parametersDigest.toLowerCase(),
  };
  const pop =
    options.pop === undefined
      ? undefined
      : {
          challenge: options.pop.challenge,
          client: options.pop.client ?? '',
          proof: {
            publicKey: { ...options.pop.proof.publicKey },
            signature: options.pop.proof.signature,
          },
        };
  if (token.length > (options.maxTokenLength ?? 16_384)) {
    throw new GrantMalformedError('the grant is too long');
  }
  const segments = token.split('.');
  if (segments.length !== 3) throw new GrantMalformedError('the grant is not a compact JWS');
  const [headerB64 = '', payloadB64 = '', signatureB64 = ''] = segments;

  const header = decodeSegment(headerB64, 'header');
  // alg first: `none` and HMAC-with-the-public-key forgeries stop here.
  if (header.alg !== 'ES256' && header.alg !== BATCH_ALG) {
    throw new GrantAlgInvalidError(
      `alg ${JSON.stringify(header.alg ?? null)} is not ES256 or ${BATCH_ALG}`,
    );
  }
  for (const name of FORBIDDEN_HEADER) {
    if (name in header) throw new GrantHeaderForbiddenError(`header member ${name} is not allowed`);
  }
  for (const name of Object.keys(header)) {
    if (!ALLOWED_HEADER.has(name)) {
      throw new GrantHeaderForbiddenError(`header member ${name} is not allowed`);
    }
  }
  if (header.typ !== 'grant+jwt') throw new GrantTypInvalidError('typ is not grant+jwt');
  const { kid } = header;
  // A kid that is not a plain token is never looked up (nor does it trigger a JWKS fetch).
  if (typeof kid !== 'string' || !KID.test(kid)) {
    throw new GrantKidUnknownError('the kid is missing or not a plain key id');
  }

  const payload = decodeSegment(payloadB64, 'payload');

  let form: VerifiedGrant['form'] = 'jws';
  if (header.alg === BATCH_ALG) {
    // One signature over the batch's root; the third segment leads this grant up to it.
    const proof = await verifyBatchProof(
      `${headerB64}.${payloadB64}`,
      signatureB64,
      kid,
      options.keys,
    );
    form = { batch: { index: proof.index, size: proof.size } };
  } else {
    await verifyJwsSignature(token, payloadB64, signatureB64, kid, options);
  }

  const claims = claimsOf(payload);
  if (!sameText(claims.iss, options.issuer)) {
    throw new GrantIssuerMismatchError('the grant was issued by another appliance');
  }
  if (!sameText(claims.aud, options.audience)) {
    throw new GrantAudienceMismatchError('the grant is for another audience');
  }
  if (now >= claims.exp + skew) throw new GrantExpiredError('the grant has expired');
  if (now + skew < claims.nbf) throw new GrantNotYetValidError('the grant is not valid yet');
  if (now + skew < claims.iat)
    throw new GrantNotYetValidError('the grant was issued in the future');
  if (claims.exp <= claims.nbf) throw new GrantMalformedError('exp is not after nbf');

  if (!sameText(claims.act.action, execution.action)) {
    throw new GrantActionMismatchError('the grant is for another action');
  }
  if (!sameText(claims.act.resource, execution.resource)) {
    throw new GrantResourceMismatchError('the grant is for another resource');
  }
  if (!sameText(claims.act.parametersDigest, execution.parametersDigest)) {
    throw new GrantParametersMismatchError('the grant is for other parameters');
  }

  // Revoked (the grant, its lineage, its runtime), or a view too old to tell: refused.
  options.revocations?.check(claims);

  if (pop !== undefined) {
    await verifyPop(
      claims.cnf.jkt,
      { audience: options.audience, grantId: claims.jti, challenge: pop.challenge },
      pop.proof,
    );
    // Verified first, then spent: synchronous, so no other verification interleaves.
    if (options.challenges?.consume(pop.challenge, pop.client) === false) {
      throw new GrantPopInvalidError("the challenge is unknown, used, expired or another client's");
    }
  }

  // Everything checked: only now change state at the appliance.
  let redeemed = false;
  if (options.redeem !== undefined && options.redeem !== false) {
    if (options.redeemer === undefined) {
      throw new ConfigError('gateway.redeemer', 'redemption was asked for but none is configured');
    }
    await options.redeemer.redeem(claims.jti, options.redeem === true ? undefined : options.redeem);
    redeemed = true;
  }
  return {
    grantId: claims.jti,
    runtimeId: claims.sub,
    kid,
    form,
    claims,
    possessionProven: pop !== undefined,
    redeemed,
  };
}

/** The ES256 JWS form: the canonical signature, then jose over the very bytes parsed. */
async function verifyJwsSignature(
  token: string,
  payloadB64: string,
  signatureB64: string,
  kid: string,
  options: GrantVerifierConfig,
): Promise<void> {
  const signature = decodeBase64url(signatureB64);
  if (signature === undefined) throw new GrantMalformedError('the signature is not base64url');
  const problem = es256SignatureProblem(signature);
  if (problem !== undefined) throw new GrantSignatureInvalidError(`signature: ${problem}`);

  const key = await options.keys.getKey(kid);
  let verifiedPayload: Uint8Array;
  try {
    ({ payload: verifiedPayload } = await compactVerify(token, key.key, { algorithms: ['ES256'] }));
  } catch (cause) {
    if (cause instanceof joseErrors.JWSSignatureVerificationFailed) {
      throw new GrantSignatureInvalidError('the signature does not verify', { cause });
    }
    throw new GrantMalformedError('the grant could not be verified', { cause });
  }
  // jose verified the same segment we parsed; belt and braces.
  if (!Buffer.from(verifiedPayload).equals(decodeBase64url(payloadB64) ?? Buffer.alloc(0))) {
    throw new GrantMalformedError('the verified payload differs from the parsed one');
  }
}

export interface GrantVerifier {
  verify(jws: unknown, request: VerifyGrantRequest): Promise<VerifiedGrant>;
}

/** A verifier bound to one configuration (issuer, audience, keys, redemption, clock). */
export function createGrantVerifier(config: GrantVerifierConfig): GrantVerifier {
  checkConfig(config);
  return { verify: (jws, request) => verifyGrant(jws, { ...config, ...request }) };
}

/**
 * The digest of the execution's parameters; parameters with no canonical JSON form (a lone
 * surrogate, a value JSON cannot hold) match no grant: refused, never a crash.
 */
function digestOf(parameters: unknown): string {
  try {
    return parametersDigest(parameters);
  } catch (cause) {
    throw new GrantParametersMismatchError(
      'the parameters have no canonical JSON form (RFC 8785): no grant can name them',
      { cause },
    );
  }
}
