/**
 * Refused grant requests on the record, without letting a flood grow the log without
 * bound (docs/protocol.md §4, "Refusals"). Every refusal after the body parses (bad
 * request signature, session_not_live, replay, stale request, lineage errors, ...) is
 * keyed by (claimed runtime, code). The first refusal of a key in its window is written at
 * once (a `grant.refused` entry with the request's digest and body); repeats within the
 * window are counted and their number is written (`repeats`) with the key's next refusal
 * after the window. Beyond the budgets (entries per window in all, per runtime) and for
 * keys evicted from the bounded key table, refusals are counted and written as `dropped`
 * on the next refusal entry. The same mechanism as refused operator attempts
 * (src/shared/refusal-window.ts): a bounded number of entries per window, nothing silently lost.
 *
 * The runtime id is what the request claimed: a refused request's claims are exactly what
 * did not hold, so the budget per runtime bounds a flood under one name and the budget in
 * all bounds a flood spread over made-up names.
 */
import type { ErrorCode } from '../shared/errors.js';
import { RefusalWindow, type RefusalAdmission } from '../shared/refusal-window.js';

export interface RefusalWindowOptions {
  readonly windowSeconds: number;
  /** Refusal entries at most per window, in all (default 1000). */
  readonly maxEntriesPerWindow?: number;
  /** Refusal entries at most per window and claimed runtime (default 20). */
  readonly maxPerRuntime?: number;
  /** Keys remembered at most (least recently used evicted first; default 10 000). */
  readonly maxKeys?: number;
}

/** One refusal window (src/shared/refusal-window.ts) keyed by (claimed runtime, code). */
export class GrantRefusalWindow {
  readonly #window: RefusalWindow;

  constructor(options: RefusalWindowOptions) {
    if (!(options.windowSeconds > 0)) throw new TypeError('windowSeconds must be > 0');
    this.#window = new RefusalWindow({
      windowMs: options.windowSeconds * 1000,
      max: Math.max(1, options.maxEntriesPerWindow ?? 1000),
      maxPerBucket: Math.max(1, options.maxPerRuntime ?? 20),
      maxKeys: Math.max(1, options.maxKeys ?? 10_000),
    });
  }

  /** Keys currently remembered (at most maxKeys). */
  get size(): number {
    return this.#window.size;
  }

  /** An admitted refusal whose entry could not be written: counted with the next one. */
  unwritten(count: number): void {
    this.#window.unwritten(count);
  }

  /** Whether this refusal is written now (with what it summarises) or only counted. */
  admit(runtime: string, code: ErrorCode, t: number): RefusalAdmission {
    return this.#window.admit(`${runtime}\u0000${code}`, runtime, t);
  }
}
