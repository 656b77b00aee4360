/**
 * Proof of possession of the grant's `cnf.jkt` key (RFC 7800): the gateway hands the runtime
 * a fresh challenge; the runtime signs, with its attested session key, the bytes of
 * `JCS({"typ": "grantor-pop/v1", "aud": <gateway audience>, "jti": <grantId>,
 * "challenge": <challenge>})` with ES256 (r‖s, base64url) and sends the signature and its
 * public JWK. A copied grant is then useless without the session key.
 */
import { createPublicKey, randomBytes, timingSafeEqual, verify } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { canonicalJson } from './digest.js';
import { decodeBase64url } from './encoding.js';
import { GrantPopInvalidError } from './errors.js';

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
  const thumbprint = await calculateJwkThumbprint({ kty, crv, x, y }, 'sha256');
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

/**
 * Issues challenges and accepts each once, within `ttlMs` (in-memory: one gateway process).
 */
export class PopChallenges {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #issued = new Map<string, number>();

  constructor(options: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  issue(): string {
    this.#sweep();
    const challenge = createPopChallenge();
    this.#issued.set(challenge, this.#now() + this.#ttlMs);
    return challenge;
  }

  /** True once for a challenge this instance issued and that has not expired. */
  consume(challenge: string): boolean {
    const expiresAt = this.#issued.get(challenge);
    this.#issued.delete(challenge);
    return expiresAt !== undefined && this.#now() < expiresAt;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [c, expiresAt] of this.#issued) if (now >= expiresAt) this.#issued.delete(c);
  }
}
