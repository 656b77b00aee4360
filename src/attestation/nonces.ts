/**
 * Challenge nonces that no outsider can cancel (issue 12). A nonce is stateless and MAC-ed:
 *
 *   nonce (32 bytes) = random (12) ‖ expiry (6, ms since the epoch, big-endian) ‖ tag (14)
 *   tag = HMAC-SHA-256(key, "grantor-nonce-v1" ‖ 0x00 ‖ runtimeId ‖ 0x00 ‖ random ‖ expiry)
 *
 * with a key drawn at random per process (a restart forgets every challenge, which only
 * makes runtimes ask again). Issuing keeps nothing, so however many challenges anyone asks
 * for in a runtime's name, no earlier challenge of that runtime is forgotten or spent.
 *
 * Single use: a nonce is recorded as consumed only by an attempt whose quote the runtime's
 * AK signed (the caller decides, see AttestationService), and kept until it expires; only
 * the runtime's own TPM can add entries, at most `maxPerRuntime` within one TTL. An attempt
 * with a bad signature leaves the nonce usable: nobody can burn a challenge they cannot
 * answer with the runtime's TPM.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type NonceStatus = 'ok' | 'unknown' | 'expired' | 'reused';

export interface IssuedNonce {
  readonly nonce: Buffer;
  readonly expiresAt: Date;
}

export interface NonceStoreOptions {
  readonly ttlMs?: number;
  /** Consumed nonces remembered per runtime until they expire (default 1024). */
  readonly maxPerRuntime?: number;
  readonly random?: (n: number) => Buffer;
}

const NONCE_BYTES = 32;
const RANDOM_BYTES = 12;
const EXPIRY_BYTES = 6;
const TAG_OFFSET = RANDOM_BYTES + EXPIRY_BYTES;
const DOMAIN = Buffer.from('grantor-nonce-v1\0', 'utf8');

export class NonceStore {
  readonly #key: Buffer;
  /** runtimeId -> consumed nonce (base64) -> its expiry (ms). */
  readonly #consumed = new Map<string, Map<string, number>>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #random: (n: number) => Buffer;

  constructor(options: NonceStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#max = options.maxPerRuntime ?? 1024;
    this.#random = options.random ?? randomBytes;
    // Not from the injectable source: tests that fix `random` must not fix the MAC key.
    this.#key = randomBytes(32);
  }

  #tag(runtimeId: string, body: Uint8Array): Buffer {
    return createHmac('sha256', this.#key)
      .update(DOMAIN)
      .update(runtimeId, 'utf8')
      .update(Buffer.from([0]))
      .update(body)
      .digest()
      .subarray(0, NONCE_BYTES - TAG_OFFSET);
  }

  /** A fresh challenge for `runtimeId`; keeps no state. */
  issue(runtimeId: string, now: Date): IssuedNonce {
    const expiresAt = now.getTime() + this.#ttlMs;
    const body = Buffer.alloc(TAG_OFFSET);
    this.#random(RANDOM_BYTES).copy(body, 0, 0, RANDOM_BYTES);
    body.writeUIntBE(expiresAt, RANDOM_BYTES, EXPIRY_BYTES);
    return {
      nonce: Buffer.concat([body, this.#tag(runtimeId, body)]),
      expiresAt: new Date(expiresAt),
    };
  }

  /**
   * What this nonce is for this runtime, without changing anything: `unknown` when it was
   * not issued to this runtime by this process (another runtime's nonce is unknown here and
   * stays usable by its own runtime), `reused` once consumed, `expired` past its expiry.
   */
  check(runtimeId: string, nonce: Uint8Array, now: Date): NonceStatus {
    if (nonce.length !== NONCE_BYTES) return 'unknown';
    const bytes = Buffer.from(nonce);
    const body = bytes.subarray(0, TAG_OFFSET);
    if (!timingSafeEqual(bytes.subarray(TAG_OFFSET), this.#tag(runtimeId, body))) return 'unknown';
    if (this.#consumed.get(runtimeId)?.has(bytes.toString('base64')) === true) return 'reused';
    const expiresAt = body.readUIntBE(RANDOM_BYTES, EXPIRY_BYTES);
    if (now.getTime() > expiresAt) return 'expired';
    if (this.#full(runtimeId, now.getTime())) return 'unknown';
    return 'ok';
  }

  /**
   * Record a nonce that `check` found `ok` as used (call in the same synchronous step as the
   * check, after the quote's signature verified). Kept until it expires.
   */
  consume(runtimeId: string, nonce: Uint8Array): void {
    const bytes = Buffer.from(nonce);
    if (bytes.length !== NONCE_BYTES) return;
    const expiresAt = bytes.readUIntBE(RANDOM_BYTES, EXPIRY_BYTES);
    let set = this.#consumed.get(runtimeId);
    if (set === undefined) {
      set = new Map();
      this.#consumed.set(runtimeId, set);
    }
    // Entries go in expiry order (roughly): drop the expired ones at the front.
    for (const [key, at] of set) {
      if (at >= expiresAt - this.#ttlMs) break;
      set.delete(key);
    }
    set.set(bytes.toString('base64'), expiresAt);
  }

  /**
   * A runtime that consumed `maxPerRuntime` unexpired nonces gets no more until some expire
   * (only its own TPM's quotes consume, so only it is held back). Sweeps as it goes.
   */
  #full(runtimeId: string, now: number): boolean {
    const set = this.#consumed.get(runtimeId);
    if (set === undefined || set.size < this.#max) return false;
    for (const [key, expiresAt] of set) if (expiresAt < now) set.delete(key);
    return set.size >= this.#max;
  }

  /** Drop expired consumed entries of every runtime (an expired nonce is refused anyway). */
  sweep(now: Date): void {
    const t = now.getTime();
    for (const [runtimeId, set] of this.#consumed) {
      for (const [key, expiresAt] of set) if (expiresAt < t) set.delete(key);
      if (set.size === 0) this.#consumed.delete(runtimeId);
    }
  }

  /** Forget a runtime's consumed nonces (revocation, deleted enrollment). */
  forget(runtimeId: string): void {
    this.#consumed.delete(runtimeId);
  }

  /** Consumed nonces held in memory (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.#consumed.values()) n += set.size;
    return n;
  }
}
