/**
 * Challenge nonces: 32 random bytes, bound to one runtime, single-use (consumed by any
 * attempt, pass or fail), expiring after a short TTL, and bounded in number per runtime
 * (issuing past the bound forgets the oldest). In memory: a restart forgets every challenge,
 * which only makes runtimes ask again.
 */
import { randomBytes } from 'node:crypto';

export type NonceStatus = 'ok' | 'unknown' | 'expired' | 'reused';

export interface IssuedNonce {
  readonly nonce: Buffer;
  readonly expiresAt: Date;
}

interface Entry {
  readonly runtimeId: string;
  readonly expiresAt: number;
  used: boolean;
}

export interface NonceStoreOptions {
  readonly ttlMs?: number;
  readonly maxPerRuntime?: number;
  readonly random?: (n: number) => Buffer;
}

export class NonceStore {
  readonly #entries = new Map<string, Entry>();
  readonly #byRuntime = new Map<string, string[]>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #random: (n: number) => Buffer;

  constructor(options: NonceStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#max = options.maxPerRuntime ?? 8;
    this.#random = options.random ?? randomBytes;
  }

  issue(runtimeId: string, now: Date): IssuedNonce {
    this.#sweep(now.getTime());
    const nonce = this.#random(32);
    const key = nonce.toString('base64');
    const expiresAt = now.getTime() + this.#ttlMs;
    this.#entries.set(key, { runtimeId, expiresAt, used: false });
    const list = this.#byRuntime.get(runtimeId) ?? [];
    list.push(key);
    while (list.length > this.#max) {
      const oldest = list.shift();
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#byRuntime.set(runtimeId, list);
    return { nonce, expiresAt: new Date(expiresAt) };
  }

  /**
   * Look the nonce up for this runtime and consume it, atomically (no await): a second
   * attempt with the same nonce sees `reused`. A nonce of another runtime is `unknown` and
   * left alone, so nobody can burn another runtime's challenge.
   */
  consume(runtimeId: string, nonce: Uint8Array, now: Date): NonceStatus {
    if (nonce.length !== 32) return 'unknown';
    const entry = this.#entries.get(Buffer.from(nonce).toString('base64'));
    if (entry?.runtimeId !== runtimeId) return 'unknown';
    if (entry.used) return 'reused';
    entry.used = true;
    return now.getTime() > entry.expiresAt ? 'expired' : 'ok';
  }

  /** Forget a runtime's nonces (revocation, deleted enrollment). */
  forget(runtimeId: string): void {
    for (const key of this.#byRuntime.get(runtimeId) ?? []) this.#entries.delete(key);
    this.#byRuntime.delete(runtimeId);
  }

  /** Drop entries expired more than one TTL ago (kept that long to report reuse/expiry). */
  #sweep(now: number): void {
    for (const [runtimeId, list] of this.#byRuntime) {
      const keep = list.filter((key) => {
        const e = this.#entries.get(key);
        if (e !== undefined && now <= e.expiresAt + this.#ttlMs) return true;
        this.#entries.delete(key);
        return false;
      });
      if (keep.length === 0) this.#byRuntime.delete(runtimeId);
      else this.#byRuntime.set(runtimeId, keep);
    }
  }
}
