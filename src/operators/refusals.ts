/**
 * Refused operator attempts, audited without letting a flood fill the log, and without
 * letting a flood hide anything that matters.
 *
 * Two lanes, each with its own key table, window counters and budgets, so junk can never
 * spend what a real credential's refusal needs:
 *
 * - `credentialed`: a valid operator credential was refused (`role_forbidden`, a valid
 *   operator credential on a runtime route): someone holds a working credential and tried
 *   something outside it, maybe a stolen one. Budgeted per identity (`maxPerIdentity`
 *   entries per window each), so one credential's flood cannot hide another's attempt.
 * - `junk`: no, an invalid or a non-operator credential. Budgeted per client address
 *   (`maxPerAddress`; IPv6 per /64) and in all (`maxEntriesPerWindow`).
 *
 * Within a lane a refusal is keyed by (client address, method and route, reason, presented
 * identity). The first refusal of a key in its window is written at once; repeats within
 * the window are only counted, and the count is written (`repeats:N`) with the next
 * refusal of that key after the window. Refusals beyond a budget (and the unreported
 * repeats of keys evicted from the bounded key table) are counted and written as
 * `dropped:N` on the lane's next entry. So the log grows by a bounded number of refusal
 * entries per window and memory by at most `maxKeys` keys per lane, whatever the flood;
 * nothing is silently lost, only summarised.
 */
import type { ErrorCode } from '../shared/errors.js';
import { addressKey } from '../shared/address.js';
import { RefusalWindow } from '../shared/refusal-window.js';

/** One refused attempt, as the operator auth hook reports it (src/http/plugins/auth.ts). */
export interface RefusedAttempt {
  readonly method: string;
  /** The route pattern, e.g. `/v1/keys/rotate`. */
  readonly route: string;
  readonly reason: string;
  /** The answered error code: `unauthenticated` or `forbidden`. */
  readonly code: ErrorCode;
  readonly address: string;
  /**
   * Who the credential claims or proves to be: the operator id (`tok_...`, `cert:...`) when
   * known, the id part of a token-shaped bearer otherwise; never a secret.
   */
  readonly identity?: string;
  /**
   * The credential was valid (role_forbidden, or a valid operator credential on a runtime
   * route): audited on its own budget, per identity, which junk cannot spend.
   */
  readonly credentialed?: boolean;
  /** The person the valid credential was issued to (operator registry id). */
  readonly person?: string;
  /** For a certificate the TLS layer refused: its reason, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`. */
  readonly detail?: string;
  readonly time: string;
}

/** What is written: the attempt, plus what was summarised since. */
export interface RefusalEntry extends RefusedAttempt {
  /** Refusals of this same key in its previous window that were counted, not written. */
  readonly repeats: number;
  /** Refusals of this lane counted, not written, since its last entry (budget, eviction). */
  readonly dropped: number;
}

export interface RefusalAuditOptions {
  readonly windowSeconds: number;
  /** Junk refusal entries at most per window, in all. */
  readonly maxEntriesPerWindow: number;
  /** Junk refusal entries at most per window and client address (default 10). */
  readonly maxPerAddress?: number;
  /** Credentialed refusal entries at most per window and identity (default 20). */
  readonly maxPerIdentity?: number;
  /** Credentialed refusal entries at most per window, in all (default 10 000). */
  readonly maxCredentialedPerWindow?: number;
  /** Keys remembered at most per lane (least recently used evicted first). */
  readonly maxKeys?: number;
  readonly write: (entry: RefusalEntry) => Promise<void>;
  readonly now?: () => number;
}

export class RefusalAudit {
  readonly #junk: RefusalWindow;
  readonly #credentialed: RefusalWindow;
  readonly #write: (entry: RefusalEntry) => Promise<void>;
  readonly #now: () => number;

  constructor(options: RefusalAuditOptions) {
    if (!(options.windowSeconds > 0) || !Number.isInteger(options.maxEntriesPerWindow)) {
      throw new TypeError('windowSeconds > 0 and an integer maxEntriesPerWindow are required');
    }
    const windowMs = options.windowSeconds * 1000;
    const maxKeys = Math.max(1, options.maxKeys ?? 10_000);
    this.#junk = new RefusalWindow({
      windowMs,
      max: Math.max(1, options.maxEntriesPerWindow),
      maxPerBucket: Math.max(1, options.maxPerAddress ?? 10),
      maxKeys,
    });
    this.#credentialed = new RefusalWindow({
      windowMs,
      max: Math.max(1, options.maxCredentialedPerWindow ?? 10_000),
      maxPerBucket: Math.max(1, options.maxPerIdentity ?? 20),
      maxKeys,
    });
    this.#write = options.write;
    this.#now = options.now ?? (() => Date.now());
  }

  /** Keys currently remembered (bounded by maxKeys per lane). */
  get size(): number {
    return this.#junk.size + this.#credentialed.size;
  }

  /** Record one refusal: written, counted as a repeat, or counted as dropped. */
  async refused(attempt: RefusedAttempt): Promise<void> {
    const address = addressKey(attempt.address);
    const key = [
      address,
      attempt.method,
      attempt.route,
      attempt.reason,
      attempt.identity ?? '',
    ].join('\u0000');
    const credentialed = attempt.credentialed === true && attempt.identity !== undefined;
    const admission = credentialed
      ? this.#credentialed.admit(key, attempt.identity ?? '', this.#now())
      : this.#junk.admit(key, address, this.#now());
    if (!admission.write) return;
    await this.#write({ ...attempt, repeats: admission.repeats, dropped: admission.dropped });
  }
}
