/**
 * The revocation feed (docs/protocol.md §3.1): every revocation the pipeline applies gets the
 * next sequence number and is written in the same synced batch as the revoked records, so
 * the feed says exactly what was applied. Gateways follow it by long-poll (`since`), and
 * the snapshot (revocation-snapshot.ts) lists what is revoked now.
 *
 * Writes are serialised: sequence number n+1 is written only once n is, so a subscriber
 * woken after n never misses an n-1 written later. A failed write gives its numbers back.
 *
 * Memory: a waiting subscriber is one timer and one callback; an answer is at most one page.
 * At most `maxSubscribers` wait at once; one more is refused (`revocation_feed_full`).
 */
import { KeyedQueue } from '../shared/keyed-queue.js';
import { ConfigError, GrantorError } from '../shared/errors.js';
import type { DomainLogger } from '../shared/log.js';
import type { GrantorMetrics } from '../shared/metrics.js';
import { RevocationFeedFullError, RevocationSnapshotRequiredError } from './errors.js';
import type { GrantRecord, GrantStore, PendingAuditChange } from './grant-store.port.js';
import type { RevocationEvent, RevocationInput } from './revocations.port.js';

export interface RevocationFeedSettings {
  /** Most events in one answer. Default 500. */
  readonly pageSize?: number;
  /** Most subscribers waiting at once. Default 256. */
  readonly maxSubscribers?: number;
  /** Longest wait of one long-poll, ms. Default 25 000. */
  readonly maxWaitMs?: number;
  /**
   * Seconds an event is kept past its `exp` (a gateway's clock tolerance: the SDK's
   * largest is 300). Default 300.
   */
  readonly graceSeconds?: number;
}

/** One answer of the feed. */
export interface RevocationPage {
  readonly events: RevocationEvent[];
  /** The highest sequence number written when the page was read. */
  readonly head: number;
  /** The highest sequence number forgotten. */
  readonly floor: number;
}

/** What the snapshot lists: what is revoked now, current to `seq`. */
export interface RevokedNow {
  readonly seq: number;
  readonly grants: { readonly id: string; readonly exp: number }[];
  readonly runtimes: { readonly id: string; readonly exp: number }[];
}

const DEFAULTS = { pageSize: 500, maxSubscribers: 256, maxWaitMs: 25_000, graceSeconds: 300 };

function setting(key: keyof typeof DEFAULTS, value: number | undefined, min: number): number {
  const v = value ?? DEFAULTS[key];
  if (!Number.isSafeInteger(v) || v < min) {
    throw new ConfigError(`grants.revocationFeed.${key}`, `must be an integer >= ${min}`);
  }
  return v;
}

export class RevocationFeed {
  readonly #store: GrantStore;
  readonly #pageSize: number;
  readonly #maxSubscribers: number;
  readonly maxWaitMs: number;
  readonly #graceSeconds: number;
  readonly #writes = new KeyedQueue();
  #head: number | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(store: GrantStore, settings: RevocationFeedSettings = {}) {
    this.#store = store;
    this.#pageSize = setting('pageSize', settings.pageSize, 1);
    this.#maxSubscribers = setting('maxSubscribers', settings.maxSubscribers, 0);
    this.maxWaitMs = setting('maxWaitMs', settings.maxWaitMs, 0);
    this.#graceSeconds = setting('graceSeconds', settings.graceSeconds, 0);
  }

  /** The highest sequence number written. */
  async head(): Promise<number> {
    return (await this.#store.revocationBounds()).head;
  }

  /** Subscribers waiting now (a gauge). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Write `records` (the revoked grants), the feed's events for `inputs` and the audit entry
   * owed for them (`pending`, audit-pending.ts) in one synced batch; resolves with the events
   * once written, and wakes the waiting subscribers.
   */
  async apply(
    records: readonly GrantRecord[],
    inputs: readonly RevocationInput[],
    pending?: PendingAuditChange,
  ): Promise<RevocationEvent[]> {
    return this.#writes.run('feed', async () => {
      const head = this.#head ?? (await this.#store.revocationBounds()).head;
      const events = inputs.map((e, i) => ({ ...e, seq: head + 1 + i }));
      try {
        await this.#store.update(records, events, pending);
      } catch (e) {
        // Unknown whether the batch landed: read the head again next time.
        this.#head = undefined;
        throw e;
      }
      this.#head = head + events.length;
      if (events.length > 0) this.#wake();
      return events;
    });
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  /**
   * The events after `since`, at most one page. With nothing newer, waits up to `waitMs`
   * (bounded by maxWaitMs) for the next write, or until `signal` aborts (the client left).
   */
  async since(since: number, waitMs: number, signal?: AbortSignal): Promise<RevocationPage> {
    let bounds = await this.#store.revocationBounds();
    if (since < bounds.floor || since > bounds.head) {
      throw new RevocationSnapshotRequiredError(undefined, {
        details: { floor: bounds.floor, head: bounds.head },
      });
    }
    const wait = Math.min(Math.max(0, waitMs), this.maxWaitMs);
    if (since === bounds.head && wait > 0 && signal?.aborted !== true) {
      if (this.#waiters.size >= this.#maxSubscribers) throw new RevocationFeedFullError();
      const waiter = this.#waitForWrite(wait, signal);
      // A write that landed between the read above and the waiter: do not wait for the next.
      bounds = await this.#store.revocationBounds();
      if (bounds.head > since) waiter.cancel();
      await waiter.woken;
      bounds = await this.#store.revocationBounds();
    }
    const events = await this.#store.revocationsSince(since, this.#pageSize);
    const last = events.at(-1)?.seq ?? bounds.head;
    return { events, head: Math.max(bounds.head, last), floor: bounds.floor };
  }

  /** Registers a waiter now (synchronously); `woken` settles on a write, timeout or abort. */
  #waitForWrite(
    ms: number,
    signal: AbortSignal | undefined,
  ): { woken: Promise<void>; cancel: () => void } {
    let cancel = (): void => undefined;
    const woken = new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
      cancel = done;
    });
    return { woken, cancel };
  }

  /** What is revoked at `nowSec` (events not yet past their exp and grace), current to `seq`. */
  async revokedNow(nowSec: number): Promise<RevokedNow> {
    const { head } = await this.#store.revocationBounds();
    const grants = new Map<string, number>();
    const runtimes = new Map<string, number>();
    let from = 0;
    for (;;) {
      const page = await this.#store.revocationsSince(from, 1000);
      for (const e of page) {
        if (e.seq > head) break;
        if (e.exp + this.#graceSeconds <= nowSec) continue;
        const into = e.kind === 'grant' ? grants : runtimes;
        const id = e.kind === 'grant' ? e.grantId : e.runtimeId;
        into.set(id, Math.max(into.get(id) ?? 0, e.exp));
      }
      const last = page.at(-1)?.seq;
      if (last === undefined || last >= head || page.length < 1000) break;
      from = last;
    }
    const list = (m: Map<string, number>): { id: string; exp: number }[] =>
      [...m].map(([id, exp]) => ({ id, exp })).sort((a, b) => (a.id < b.id ? -1 : 1));
    return { seq: head, grants: list(grants), runtimes: list(runtimes) };
  }

  /** Forget the events no gateway needs any more (past their exp and grace), oldest first. */
  async prune(nowSec: number, limit = 1000): Promise<number> {
    return this.#writes.run('feed', () =>
      this.#store.pruneRevocations(nowSec - this.#graceSeconds, limit),
    );
  }
}

/** Where a failed prune is told: the grants logger and a counter. */
export interface PruneReport {
  readonly logger: DomainLogger;
  readonly metrics?: Pick<GrantorMetrics, 'revocationFeedPruneFailures'> | undefined;
  /** Epoch ms (default Date.now). */
  readonly now?: () => number;
}

/**
 * Prunes `feed` every `intervalMs` (unref'd; call the result to stop). A failure is logged
 * and counted, then retried at the next tick: the events stay (the feed is only longer),
 * so nothing is lost, but a prune failing for good is a store an operator must look at.
 */
export function pruneFeedEvery(
  feed: Pick<RevocationFeed, 'prune'>,
  intervalMs: number,
  report: PruneReport,
): () => void {
  const now = report.now ?? Date.now;
  const timer = setInterval(() => {
    feed.prune(Math.floor(now() / 1000)).catch((e: unknown) => {
      report.metrics?.revocationFeedPruneFailures.inc();
      report.logger.error(
        {
          event: 'revocation_feed_prune_failed',
          code: e instanceof GrantorError ? e.code : 'internal_error',
          err: e instanceof Error ? e.message : String(e),
        },
        'could not forget expired revocation feed events; retried at the next sweep',
      );
    });
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}
