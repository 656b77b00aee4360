/**
 * Refused operator attempts, audited without letting a flood fill the log.
 *
 * A refusal is keyed by (client address, method and route, reason, presented identity).
 * The first refusal of a key in its window is written at once; repeats within the window
 * are only counted, and the count is written (`repeats:N`) with the next refusal of that
 * key after the window. Across all keys at most `maxEntriesPerWindow` entries are written
 * per window; refusals beyond that (and the unreported repeats of keys evicted from the
 * bounded key table) are counted and written as `dropped:N` on the next entry. So the log
 * grows by at most `maxEntriesPerWindow` refusal entries per window, and memory by at most
 * `maxKeys` keys, whatever the flood; nothing is silently lost, only summarised.
 */

/** One refused attempt, as the operator auth hook reports it (src/http/plugins/auth.ts). */
export interface RefusedAttempt {
  readonly method: string;
  readonly route: string;
  readonly reason: string;
  readonly code: string;
  readonly address: string;
  /** An operator id or a token id; never a secret. */
  readonly identity?: string;
  readonly time: string;
}

/** What is written: the attempt, plus what was summarised since. */
export interface RefusalEntry extends RefusedAttempt {
  /** Refusals of this same key in its previous window that were counted, not written. */
  readonly repeats: number;
  /** Refusals of any key counted, not written, since the last entry (cap or eviction). */
  readonly dropped: number;
}

export interface RefusalAuditOptions {
  readonly windowSeconds: number;
  readonly maxEntriesPerWindow: number;
  /** Keys remembered at most (least recently used evicted first). */
  readonly maxKeys?: number;
  readonly write: (entry: RefusalEntry) => Promise<void>;
  readonly now?: () => number;
}

interface KeyState {
  since: number;
  repeats: number;
}

export class RefusalAudit {
  readonly #keys = new Map<string, KeyState>();
  readonly #windowMs: number;
  readonly #max: number;
  readonly #maxKeys: number;
  readonly #write: (entry: RefusalEntry) => Promise<void>;
  readonly #now: () => number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #written = 0;
  #dropped = 0;

  constructor(options: RefusalAuditOptions) {
    if (!(options.windowSeconds > 0) || !Number.isInteger(options.maxEntriesPerWindow)) {
      throw new TypeError('windowSeconds > 0 and an integer maxEntriesPerWindow are required');
    }
    this.#windowMs = options.windowSeconds * 1000;
    this.#max = Math.max(1, options.maxEntriesPerWindow);
    this.#maxKeys = Math.max(1, options.maxKeys ?? 10_000);
    this.#write = options.write;
    this.#now = options.now ?? (() => Date.now());
  }

  /** Keys currently remembered (bounded by maxKeys). */
  get size(): number {
    return this.#keys.size;
  }

  /** Record one refusal: written, counted as a repeat, or counted as dropped. */
  async refused(attempt: RefusedAttempt): Promise<void> {
    const t = this.#now();
    if (t - this.#windowStart >= this.#windowMs) {
      this.#windowStart = t;
      this.#written = 0;
    }
    const key = [
      attempt.address,
      attempt.method,
      attempt.route,
      attempt.reason,
      attempt.identity ?? '',
    ].join('\u0000');
    const state = this.#keys.get(key);
    if (state !== undefined) {
      // Most recently used last.
      this.#keys.delete(key);
      this.#keys.set(key, state);
      if (t - state.since < this.#windowMs) {
        state.repeats += 1;
        return;
      }
    }
    const repeats = state?.repeats ?? 0;
    if (this.#written >= this.#max) {
      this.#dropped += 1 + repeats;
      this.#keys.delete(key);
      return;
    }
    this.#written += 1;
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#keys.delete(key);
    this.#keys.set(key, { since: t, repeats: 0 });
    this.#evict();
    await this.#write({ ...attempt, repeats, dropped });
  }

  #evict(): void {
    while (this.#keys.size > this.#maxKeys) {
      const oldest = this.#keys.entries().next();
      if (oldest.done === true) return;
      this.#dropped += oldest.value[1].repeats;
      this.#keys.delete(oldest.value[0]);
    }
  }
}
