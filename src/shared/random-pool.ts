/**
 * Random bytes for identifiers on the hot path (a grant's id), taken from a pool that one
 * `randomFillSync` call refills, as Node itself does for `randomUUID`. `randomBytes(16)`
 * per grant was ~1% of the event loop's busy time at load (a native call, a buffer
 * allocation and the CSPRNG's per-call overhead each time; docs/grants.md). The bytes are
 * the same CSPRNG's; every byte is handed out once, and each call returns a copy, so no
 * caller sees another's bytes or a later refill.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;

export class RandomPool {
  readonly #pool: Buffer;
  #offset: number;

  constructor(size = POOL_BYTES) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError('pool size >= 1');
    this.#pool = Buffer.alloc(size);
    this.#offset = size; // empty: filled on first use
  }

  /** `n` fresh random bytes in a buffer of their own. */
  bytes(n: number): Buffer {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('n must be an integer >= 0');
    // Larger than the pool: not worth pooling.
    if (n > this.#pool.length) return randomFillSync(Buffer.alloc(n));
    if (this.#offset + n > this.#pool.length) {
      randomFillSync(this.#pool);
      this.#offset = 0;
    }
    const out = Buffer.from(this.#pool.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    return out;
  }
}

const shared = new RandomPool();

/** `randomBytes(n)`'s answer from this process's shared pool. */
export const pooledRandomBytes = (n: number): Buffer => shared.bytes(n);
