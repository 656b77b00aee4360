/**
 * Refused grant requests on the record, without letting a flood grow the log without
 * bound (docs/protocol.md §4, "Refusals"). Every refusal after the body parses (bad
 * request signature, session_not_live, replay, stale request, lineage errors, ...) is
 * keyed by (claimed runtime, code). The first refusal of a key in its window is written at
 * once (a `grant.refused` entry with the request's digest and body); repeats within the
 * window are counted and their number is written (`repeats`) with the key's next refusal
 * after the window. Beyond the budgets (entries per window in all, per runtime) and for
 * keys evicted from the bounded key table, refusals are counted and written as `dropped`
 * on the next refusal entry. The same scheme as refused operator attempts
 * (src/operators/refusals.ts): a bounded number of entries per window, nothing silently lost.
 *
 * The runtime id is what the request claimed: a refused request's claims are exactly what
 * did not hold, so the budget per runtime bounds a flood under one name and the budget in
 * all bounds a flood spread over made-up names.
 */

export interface RefusalWindowOptions {
  readonly windowSeconds: number;
  /** Refusal entries at most per window, in all (default 1000). */
  readonly maxEntriesPerWindow?: number;
  /** Refusal entries at most per window and claimed runtime (default 20). */
  readonly maxPerRuntime?: number;
  /** Keys remembered at most (least recently used evicted first; default 10 000). */
  readonly maxKeys?: number;
}

export type RefusalAdmission =
  | { readonly write: false }
  | { readonly write: true; readonly repeats: number; readonly dropped: number };

interface KeyState {
  since: number;
  repeats: number;
}

export class GrantRefusalWindow {
  readonly #keys = new Map<string, KeyState>();
  readonly #perRuntime = new Map<string, number>();
  readonly #windowMs: number;
  readonly #max: number;
  readonly #maxPerRuntime: number;
  readonly #maxKeys: number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #written = 0;
  #dropped = 0;

  constructor(options: RefusalWindowOptions) {
    if (!(options.windowSeconds > 0)) throw new TypeError('windowSeconds must be > 0');
    this.#windowMs = options.windowSeconds * 1000;
    this.#max = Math.max(1, options.maxEntriesPerWindow ?? 1000);
    this.#maxPerRuntime = Math.max(1, options.maxPerRuntime ?? 20);
    this.#maxKeys = Math.max(1, options.maxKeys ?? 10_000);
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
  admit(runtime: string, code: string, t: number): RefusalAdmission {
    if (t - this.#windowStart >= this.#windowMs) {
      this.#windowStart = t;
      this.#written = 0;
      this.#perRuntime.clear();
    }
    const key = `${runtime}\u0000${code}`;
    const state = this.#keys.get(key);
    if (state !== undefined) {
      this.#keys.delete(key);
      this.#keys.set(key, state);
      if (t - state.since < this.#windowMs) {
        state.repeats += 1;
        return { write: false };
      }
    }
    const repeats = state?.repeats ?? 0;
    const ofRuntime = this.#perRuntime.get(runtime) ?? 0;
    if (this.#written >= this.#max || ofRuntime >= this.#maxPerRuntime) {
      this.#dropped += 1 + repeats;
      this.#keys.delete(key);
      return { write: false };
    }
    this.#written += 1;
    this.#perRuntime.set(runtime, ofRuntime + 1);
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#keys.delete(key);
    this.#keys.set(key, { since: t, repeats: 0 });
    while (this.#keys.size > this.#maxKeys) {
      const oldest = this.#keys.entries().next();
      if (oldest.done === true) break;
      this.#dropped += oldest.value[1].repeats;
      this.#keys.delete(oldest.value[0]);
    }
    return { write: true, repeats, dropped };
  }
}
