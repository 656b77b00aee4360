/**
 * The replay guard for requestIds: a bounded in-memory set checked and reserved
 * synchronously (so two concurrent requests with one id cannot both pass), backed by the
 * store (so a restart forgets nothing). An id is remembered until its request's issuedAt
 * leaves the skew window, plus a grace for a wall clock stepped back; after that the skew
 * check refuses it anyway, which is what lets RequestPruner forget it.
 *
 * The memory stands in for the store once it holds everything the store remembers: on the
 * first request the guard loads the store's live ids (one read of the requestId range);
 * from then on every new id is reserved here first. Two things send it back to the store:
 * more live ids than its bound at load (then it asks the store until everything persisted
 * before it started has expired: two skew windows plus the grace), and an id evicted by
 * the bound before its time (then until that id's time is up). An id reserved but not yet
 * written (its request is still in the pipeline) is never evicted: the store could not
 * answer for it. Whatever the memory holds is an answer (used), wherever misses go.
 */
import type { GrantStore } from './grant-store.port.js';

export interface ReplayWindow {
  /** The pipeline's clock skew, ms (an id is kept until issuedAt + skew). */
  readonly skewMs: number;
  /** Allowance for a wall clock stepped back, ms (the pruner's grace). */
  readonly graceMs: number;
}

export class ReplayGuard {
  /** Key -> expiry (issuedAt + skew), in insertion order. */
  readonly #seen = new Map<string, number>();
  /** Reserved, not yet written: never evicted (bounded by the requests in flight). */
  readonly #unwritten = new Set<string>();
  #loading: Promise<void> | undefined;
  #loaded = false;
  /** Ask the store about ids missing in memory until then (epoch ms). */
  #storeUntil = Number.POSITIVE_INFINITY;
  #storeReads = 0;

  readonly #store: Pick<GrantStore, 'hasRequest' | 'putRequest' | 'liveRequests'>;
  readonly #maxEntries: number;
  readonly #window: ReplayWindow;

  constructor(
    store: Pick<GrantStore, 'hasRequest' | 'putRequest' | 'liveRequests'>,
    maxEntries: number,
    window: ReplayWindow,
  ) {
    this.#store = store;
    this.#maxEntries = maxEntries;
    this.#window = window;
  }

  static key(runtimeId: string, requestId: string): string {
    return `${runtimeId}\n${requestId}`;
  }

  /**
   * Used by a request that is still inside the skew window (synchronous). At `exp == now`
   * the skew check still lets the bytes through, so that instant counts as inside.
   */
  seen(runtimeId: string, requestId: string, nowMs: number): boolean {
    const exp = this.#seen.get(ReplayGuard.key(runtimeId, requestId));
    return exp !== undefined && exp >= nowMs;
  }

  /**
   * Resolves once the store's live ids are in memory (the first call loads them; a failed
   * load is retried by the next call); undefined once they are.
   */
  ready(nowMs: number): Promise<void> | undefined {
    if (this.#loaded) return undefined;
    this.#loading ??= this.#load(nowMs).catch((e: unknown) => {
      this.#loading = undefined;
      throw e;
    });
    return this.#loading;
  }

  /**
   * Whether the id was used before, answered from memory as the store would answer it
   * (remembered until expiry plus grace); undefined while only the store can tell.
   */
  usedInMemory(runtimeId: string, requestId: string, nowMs: number): boolean | undefined {
    if (!this.#loaded) return undefined;
    const exp = this.#seen.get(ReplayGuard.key(runtimeId, requestId));
    if (exp !== undefined && exp + this.#window.graceMs >= nowMs) return true;
    return nowMs < this.#storeUntil ? undefined : false;
  }

  /** Reserve in memory (synchronous), evicting forgotten and then the oldest entries. */
  reserve(runtimeId: string, requestId: string, expiresAt: number, nowMs: number): void {
    if (this.#seen.size >= this.#maxEntries) {
      for (const [k, exp] of this.#seen) {
        const forgettable = exp + this.#window.graceMs < nowMs;
        if (!forgettable && this.#seen.size < this.#maxEntries) break;
        if (this.#unwritten.has(k)) continue;
        this.#seen.delete(k);
        // Evicted while the store still remembers it: the store must be asked again.
        if (!forgettable) this.#storeUntil = Math.max(this.#storeUntil, exp + this.#window.graceMs);
      }
    }
    const key = ReplayGuard.key(runtimeId, requestId);
    this.#seen.set(key, expiresAt);
    this.#unwritten.add(key);
  }

  /**
   * The reservation's write has settled (written with the grant, written alone, or given
   * up): from now on the bound may evict it. Call exactly once per `reserve`.
   */
  settled(runtimeId: string, requestId: string): void {
    this.#unwritten.delete(ReplayGuard.key(runtimeId, requestId));
  }

  /** The store's answer (when `usedInMemory` has none). */
  persisted(runtimeId: string, requestId: string): Promise<boolean> {
    this.#storeReads += 1;
    return this.#store.hasRequest(runtimeId, requestId);
  }

  /** Writes the id alone (unsynced); settles the reservation either way. */
  async persist(runtimeId: string, requestId: string, expiresAt: number): Promise<void> {
    try {
      await this.#store.putRequest(runtimeId, requestId, expiresAt);
    } finally {
      this.settled(runtimeId, requestId);
    }
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Until when (epoch ms) a miss in memory is checked in the store, and how often it was. */
  get storeWindow(): { readonly until: number; readonly reads: number } {
    return { until: this.#storeUntil, reads: this.#storeReads };
  }

  async #load(nowMs: number): Promise<void> {
    const { ids, complete } = await this.#store.liveRequests(
      nowMs - this.#window.graceMs,
      this.#maxEntries,
    );
    // Oldest first, so that the bound evicts them first. (Nothing is reserved before the
    // load: the pipeline reserves only once `ready` has nothing left to wait for.)
    ids.sort((a, b) => a.expiresAt - b.expiresAt);
    for (const { runtimeId, requestId, expiresAt } of ids) {
      const key = ReplayGuard.key(runtimeId, requestId);
      if (!this.#seen.has(key)) this.#seen.set(key, expiresAt);
    }
    // More than the bound: ask the store until everything persisted before now is past its
    // time (issuedAt may lead by one skew window and is kept one more, plus the grace).
    this.#storeUntil = complete
      ? Number.NEGATIVE_INFINITY
      : nowMs + 2 * this.#window.skewMs + this.#window.graceMs;
    this.#loaded = true;
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

  readonly #store: Pick<GrantStore, 'pruneRequests'>;
  readonly #settings: PruneSettings;
  readonly #now: () => number;

  constructor(
    store: Pick<GrantStore, 'pruneRequests'>,
    settings: PruneSettings,
    now: () => number = Date.now,
  ) {
    this.#store = store;
    this.#settings = settings;
    this.#now = now;
  }

  start(): void {
    if (this.#settings.intervalMs <= 0 || this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => {
      // One sweep at a time; a failure (store closing, disk error) waits for the next tick.
      this.#running ??= this.sweep()
        .catch(() => 0)
        .finally(() => {
          this.#running = undefined;
        });
    }, this.#settings.intervalMs);
    // Never what keeps the process alive.
    this.#timer.unref();
  }

  /** One bounded sweep now; returns how many requestIds were forgotten. */
  async sweep(): Promise<number> {
    const before = this.#now() - this.#settings.graceMs;
    let total = 0;
    for (let i = 0; i < this.#settings.maxBatches && !this.#stopped; i++) {
      const n = await this.#store.pruneRequests(before, this.#settings.batch);
      total += n;
      if (n < this.#settings.batch) break;
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
