/**
 * Proof of possession of the grant's `cnf.jkt` key (RFC 7800): the gateway hands the runtime
 * a fresh challenge; the runtime signs, with its attested session key, the bytes of
 * `JCS({"typ": "grantor-pop/v1", "aud": <gateway audience>, "jti": <grantId>,
 * "challenge": <challenge>})` with ES256 (r‖s, base64url) and sends the signature and its
 * public JWK. A copied grant is then useless without the session key.
 */
import { createPublicKey, randomBytes, timingSafeEqual, verify } from 'node:crypto';
import { jwkThumbprint } from '../shared/grant-claims.js';
import { canonicalJson } from './digest.js';
import { decodeBase64url } from './encoding.js';
import { GrantPopInvalidError, PopChallengesExhaustedError } from './errors.js';
import { parseStrictJson } from './strict-json.js';

export interface PopProof {
  /** The runtime's session public key (EC P-256 JWK: kty, crv, x, y). */
  readonly publicKey: Readonly<Record<string, unknown>>;
  /** ES256 signature (r‖s, base64url) over `popSigningInput(...)`. */
  readonly signature: string;
}

export interface PopInput {
  /** The gateway's audience (the grant's `aud`). */
  readonly audience: string;
  /** The grant's `jti`. */
  readonly grantId: string;
  /** The challenge the gateway issued (base64url). */
  readonly challenge: string;
}

/** A proof as presented: the challenge it answers and the proof itself. */
export interface PresentedPop {
  readonly challenge: string;
  readonly proof: PopProof;
}

/**
 * Reads a `Grant-PoP` header value: base64url of JSON `{challenge, signature, publicKey}`
 * (what the attester's `proofOfPossession().header` sends). Only the shape is checked here;
 * the verifier checks the proof, then spends the challenge. Throws GrantPopInvalidError.
 */
export function parsePopHeader(value: string | undefined, name = 'grant-pop'): PresentedPop {
  if (value === undefined || value.length > 4096) {
    throw new GrantPopInvalidError(`send a ${name} header`);
  }
  let parsed: unknown;
  try {
    parsed = parseStrictJson(Buffer.from(value, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new GrantPopInvalidError(`the ${name} header is not base64url JSON`, { cause });
  }
  const { challenge, signature, publicKey } = (parsed ?? {}) as Record<string, unknown>;
  if (
    typeof challenge !== 'string' ||
    typeof signature !== 'string' ||
    typeof publicKey !== 'object' ||
    publicKey === null ||
    Array.isArray(publicKey)
  ) {
    throw new GrantPopInvalidError('the proof needs challenge, signature and publicKey');
  }
  return { challenge, proof: { signature, publicKey: publicKey as Record<string, unknown> } };
}

/** The exact bytes the runtime signs. */
export function popSigningInput(input: PopInput): Uint8Array {
  return Buffer.from(
    canonicalJson({
      typ: 'grantor-pop/v1',
      aud: input.audience,
      jti: input.grantId,
      challenge: input.challenge,
    }),
    'utf8',
  );
}

/** A fresh 32-byte challenge, base64url. The gateway must accept each one once. */
export function createPopChallenge(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Checks that `proof` is by the key whose RFC 7638 thumbprint is `jkt`, over `input`.
 * Throws GrantPopInvalidError.
 */
export async function verifyPop(jkt: string, input: PopInput, proof: PopProof): Promise<void> {
  const { publicKey } = proof;
  const { kty, crv, x, y } = publicKey;
  if ('d' in publicKey) throw new GrantPopInvalidError('the proof key carries private material');
  if (kty !== 'EC' || crv !== 'P-256' || typeof x !== 'string' || typeof y !== 'string') {
    throw new GrantPopInvalidError('the proof key is not an EC P-256 public key');
  }
  if (decodeBase64url(input.challenge)?.length !== 32) {
    throw new GrantPopInvalidError('the challenge is not 32 bytes of base64url');
  }
  const thumbprint = await jwkThumbprint({ kty, crv, x, y });
  const expected = Buffer.from(jkt, 'utf8');
  const actual = Buffer.from(thumbprint, 'utf8');
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
    throw new GrantPopInvalidError('the proof key is not the key the grant is bound to');
  }
  const signature = decodeBase64url(proof.signature);
  if (signature?.length !== 64) throw new GrantPopInvalidError('the proof signature is not ES256');
  let ok: boolean;
  try {
    const key = createPublicKey({ key: { kty, crv, x, y }, format: 'jwk' });
    ok = verify('sha256', popSigningInput(input), { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch (cause) {
    throw new GrantPopInvalidError('the proof key or signature is unusable', { cause });
  }
  if (!ok) throw new GrantPopInvalidError('the proof signature does not verify');
}

export interface PopChallengeOptions {
  /** How long a challenge may be used (default 60000 ms). */
  readonly ttlMs?: number;
  /** Outstanding challenges per client; issuing one more drops its oldest (default 16). */
  readonly maxPerClient?: number;
  /** Outstanding challenges in all; past it `issue` refuses (default 10000). */
  readonly maxOutstanding?: number;
  readonly now?: () => number;
}

/** Expired challenges forgotten per call at most: each call's work stays bounded. */
const SWEEP_PER_CALL = 32;

/**
 * Issues challenges and accepts each once, within `ttlMs`, for the client it was issued to
 * (in-memory: one gateway process). Memory is bounded per client (`maxPerClient`, its
 * oldest dropped) and in all (`maxOutstanding`, then PopChallengesExhaustedError), and
 * each call does bounded work: challenges are kept in issue order, which with one ttl is
 * expiry order, so expired ones are forgotten from the front, a few per call, never by
 * scanning every outstanding challenge (40,000 of them cost 4.6 s per call before).
 */
export class PopChallenges {
  readonly #ttlMs: number;
  readonly #maxPerClient: number;
  readonly #maxOutstanding: number;
  readonly #now: () => number;
  /** Challenge → its client and expiry, in issue order. */
  readonly #issued = new Map<string, { client: string; expiresAt: number }>();
  /** Client → its outstanding challenges, oldest first (at most maxPerClient). */
  readonly #byClient = new Map<string, string[]>();

  constructor(options: PopChallengeOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#maxPerClient = options.maxPerClient ?? 16;
    this.#maxOutstanding = options.maxOutstanding ?? 10_000;
    this.#now = options.now ?? Date.now;
    for (const [name, v] of [
      ['ttlMs', this.#ttlMs],
      ['maxPerClient', this.#maxPerClient],
      ['maxOutstanding', this.#maxOutstanding],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1)
        throw new RangeError(`${name} must be an integer >= 1`);
    }
  }

  /** Outstanding challenges (expired ones not yet forgotten included). */
  get size(): number {
    return this.#issued.size;
  }

  /** A fresh challenge for `client` (e.g. its address or its credential's id). */
  issue(client = ''): string {
    const now = this.#now();
    this.#sweep(now, SWEEP_PER_CALL);
    const mine = this.#byClient.get(client) ?? [];
    if (mine.length >= this.#maxPerClient) {
      const oldest = mine.shift();
      if (oldest !== undefined) this.#issued.delete(oldest);
    }
    if (this.#issued.size >= this.#maxOutstanding) {
      // Whatever expired must go before anyone is refused.
      this.#sweep(now, this.#maxOutstanding);
      if (this.#issued.size >= this.#maxOutstanding) {
        if (mine.length === 0) this.#byClient.delete(client);
        throw new PopChallengesExhaustedError();
      }
    }
    const challenge = createPopChallenge();
    this.#issued.set(challenge, { client, expiresAt: now + this.#ttlMs });
    mine.push(challenge);
    this.#byClient.set(client, mine);
    return challenge;
  }

  /**
   * True once for a challenge this instance issued to `client` and that has not expired.
   * A challenge presented by another client is refused and stays its own client's.
   */
  consume(challenge: string, client = ''): boolean {
    const entry = this.#issued.get(challenge);
    if (entry === undefined || entry.client !== client) return false;
    this.#forget(challenge, entry.client);
    return this.#now() < entry.expiresAt;
  }

  #forget(challenge: string, client: string): void {
    this.#issued.delete(challenge);
    const mine = this.#byClient.get(client);
    if (mine === undefined) return;
    const at = mine.indexOf(challenge);
    if (at >= 0) mine.splice(at, 1);
    if (mine.length === 0) this.#byClient.delete(client);
  }

  /** Forget at most `limit` expired challenges from the front (the oldest). */
  #sweep(now: number, limit: number): void {
    let left = limit;
    for (const [challenge, { client, expiresAt }] of this.#issued) {
      if (left === 0 || now < expiresAt) return;
      this.#forget(challenge, client);
      left -= 1;
    }
  }
}
