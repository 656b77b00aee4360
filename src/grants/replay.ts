/**
 * The replay guard for requestIds: a bounded in-memory set checked and reserved
 * synchronously (so two concurrent requests with one id cannot both pass), backed by the
 * store (so a restart forgets nothing). An id is remembered until its request's issuedAt
 * leaves the skew window; after that the skew check refuses it anyway.
 */
import type { GrantStore } from './grant-store.port.js';

export class ReplayGuard {
  readonly #seen = new Map<string, number>();

  constructor(
    private readonly store: Pick<GrantStore, 'hasRequest' | 'putRequest'>,
    private readonly maxEntries: number,
  ) {}

  static key(runtimeId: string, requestId: string): string {
    return `${runtimeId}\n${requestId}`;
  }

  /** Seen in memory (synchronous). */
  seen(runtimeId: string, requestId: string, nowMs: number): boolean {
    const exp = this.#seen.get(ReplayGuard.key(runtimeId, requestId));
    return exp !== undefined && exp > nowMs;
  }

  /** Reserve in memory (synchronous), evicting expired and then the oldest entries. */
  reserve(runtimeId: string, requestId: string, expiresAt: number, nowMs: number): void {
    if (this.#seen.size >= this.maxEntries) {
      for (const [k, exp] of this.#seen) {
        if (exp <= nowMs || this.#seen.size >= this.maxEntries) this.#seen.delete(k);
        else break;
      }
    }
    this.#seen.set(ReplayGuard.key(runtimeId, requestId), expiresAt);
  }

  persisted(runtimeId: string, requestId: string): Promise<boolean> {
    return this.store.hasRequest(runtimeId, requestId);
  }

  persist(runtimeId: string, requestId: string, expiresAt: number): Promise<void> {
    return this.store.putRequest(runtimeId, requestId, expiresAt);
  }

  get size(): number {
    return this.#seen.size;
  }
}
