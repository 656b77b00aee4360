/**
 * Refusals on the record without letting a flood grow the log or the memory without bound
 * (refused operator attempts, src/operators/refusals.ts; refused grant requests,
 * src/grants/refusals.ts). The first refusal of a key in its window is written at once;
 * repeats within the window are only counted, and their number is written with the key's
 * next refusal after the window. Refusals beyond a budget (entries per window in all, and
 * per bucket), the unreported repeats of keys evicted from the bounded key table, and
 * admitted entries that could not be written are counted and written as `dropped` with the
 * next entry. Nothing is silently lost, only summarised.
 */

export type RefusalAdmission =
  | { readonly write: false }
  | { readonly write: true; readonly repeats: number; readonly dropped: number };

interface KeyState {
  since: number;
  repeats: number;
}

export interface RefusalWindowLimits {
  readonly windowMs: number;
  /** Entries at most per window, in all. */
  readonly max: number;
  /** Entries at most per window and bucket. */
  readonly maxPerBucket: number;
  /** Keys remembered at most (least recently used evicted first). */
  readonly maxKeys: number;
}

export class RefusalWindow {
  readonly #keys = new Map<string, KeyState>();
  readonly #perBucket = new Map<string, number>();
  readonly #limits: RefusalWindowLimits;
  #windowStart = Number.NEGATIVE_INFINITY;
  #written = 0;
  #dropped = 0;

  constructor(limits: RefusalWindowLimits) {
    this.#limits = limits;
  }

  /** Keys currently remembered (at most maxKeys). */
  get size(): number {
    return this.#keys.size;
  }

  /** An admitted refusal whose entry could not be written: counted with the next one. */
  unwritten(count: number): void {
    this.#dropped += count;
  }

  /** Whether this refusal is written now (with what it summarises) or only counted. */
  admit(key: string, bucket: string, t: number): RefusalAdmission {
    const { windowMs, max, maxPerBucket } = this.#limits;
    if (t - this.#windowStart >= windowMs) {
      this.#windowStart = t;
      this.#written = 0;
      this.#perBucket.clear();
    }
    const state = this.#keys.get(key);
    if (state !== undefined) {
      // Most recently used last.
      this.#keys.delete(key);
      this.#keys.set(key, state);
      if (t - state.since < windowMs) {
        state.repeats += 1;
        return { write: false };
      }
    }
    const repeats = state?.repeats ?? 0;
    const inBucket = this.#perBucket.get(bucket) ?? 0;
    if (this.#written >= max || inBucket >= maxPerBucket) {
      this.#dropped += 1 + repeats;
      this.#keys.delete(key);
      return { write: false };
    }
    this.#written += 1;
    // Bounded: a bucket is remembered only once it wrote, at most `max` per window.
    this.#perBucket.set(bucket, inBucket + 1);
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#keys.delete(key);
    this.#keys.set(key, { since: t, repeats: 0 });
    this.#evict();
    return { write: true, repeats, dropped };
  }

  #evict(): void {
    while (this.#keys.size > this.#limits.maxKeys) {
      const oldest = this.#keys.entries().next();
      if (oldest.done === true) return;
      this.#dropped += oldest.value[1].repeats;
      this.#keys.delete(oldest.value[0]);
    }
  }
}
