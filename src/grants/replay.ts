/**
 * The replay guard for requestIds: a bounded in-memory set checked and reserved
 * synchronously (so two concurrent requests with one id cannot both pass), backed by the
 * store (so a restart forgets nothing). An id is remembered until its request's issuedAt
 * leaves the skew window; after that the skew check refuses it anyway, which is what lets
 * RequestPruner forget it.
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

export interface PruneSettings {
  /** Between sweeps (ms); 0: never sweep on a timer. */
  readonly intervalMs: number;
  /** Most requestIds forgotten per batch (one LevelDB read and one write). */
  readonly batch: number;
  /** Most batches per sweep: a backlog is worked off over several sweeps. */
  readonly maxBatches: number;
  /**
   * Kept this long past its expiry (ms), so that an appliance clock stepped back by up to
   * this much cannot make an already forgotten id fresh again.
   */
  readonly graceMs: number;
}

/**
 * Forgets requestIds whose request can no longer pass the skew check: each entry expires
 * at issuedAt + clockSkew, and `#fresh` refuses a request outside the skew before it asks
 * the store, so an id past its expiry (plus a grace) is refused as `request_stale` whether
 * it is remembered or not. Sweeps are bounded (batch x maxBatches) and read only the
 * expired part of the expiry index. `stop()` ends the timer and waits for a running sweep.
 */
export class RequestPruner {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #stopped = false;

  constructor(
    private readonly store: Pick<GrantStore, 'pruneRequests'>,
    private readonly settings: PruneSettings,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (this.settings.intervalMs <= 0 || this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => {
      // One sweep at a time; a failure (store closing, disk error) waits for the next tick.
      this.#running ??= this.sweep()
        .catch(() => 0)
        .finally(() => {
          this.#running = undefined;
        });
    }, this.settings.intervalMs);
    // Never what keeps the process alive.
    this.#timer.unref();
  }

  /** One bounded sweep now; returns how many requestIds were forgotten. */
  async sweep(): Promise<number> {
    const before = this.now() - this.settings.graceMs;
    let total = 0;
    for (let i = 0; i < this.settings.maxBatches && !this.#stopped; i++) {
      const n = await this.store.pruneRequests(before, this.settings.batch);
      total += n;
      if (n < this.settings.batch) break;
    }
    return total;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  get active(): boolean {
    return this.#timer !== undefined;
  }
}
