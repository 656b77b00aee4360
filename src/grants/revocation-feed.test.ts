/**
 * The revocation feed on the real LevelDB adapter (and the memory fake for the same
 * contract): sequence numbers in the revocation's own write, across a restart; since,
 * long-poll, the subscriber bound; prune and the floor; what is revoked now.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { LevelGrantStore } from './grant-store.level.js';
import { createFakeGrantStore } from './grant-store.memory.js';
import type { GrantRecord, GrantStore } from './grant-store.port.js';
import { createMetrics } from '../shared/metrics.js';
import { RevocationFeed, pruneFeedEvery } from './revocation-feed.js';
import { refusalCode as codeOf } from '../shared/testing/refusal.js';

const dirs: string[] = [];
const dbs: Database[] = [];
afterAll(async () => {
  for (const db of dbs) await db.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function levelStore(): Promise<{ store: GrantStore; reopen: () => Promise<GrantStore> }> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-feed-'));
  dirs.push(dir);
  let db = await openDatabase(dir);
  return {
    store: new LevelGrantStore(db),
    reopen: async () => {
      await db.close();
      db = await openDatabase(dir);
      dbs.push(db);
      return new LevelGrantStore(db);
    },
  };
}

const record = (grantId: string, exp = 2000): GrantRecord => ({
  grantId,
  runtimeId: 'rt_a',
  action: 'tickets.read',
  resource: 'ticket:1',
  audience: 'gw',
  parent: null,
  root: grantId,
  depth: 0,
  iat: 100,
  exp,
  auditSeq: 1,
  revokedAt: null,
  redemption: null,
});

const grantEvent = (grantId: string, exp = 2000) =>
  ({ kind: 'grant', grantId, runtimeId: 'rt_a', at: '2026-01-01T00:00:00.000Z', exp }) as const;

/** Waits (no time bound asserted) until the feed holds `n` waiting subscribers. */
async function untilWaiting(feed: RevocationFeed, n: number): Promise<void> {
  while (feed.waiting !== n) await new Promise((r) => setTimeout(r, 5));
}

for (const [name, open] of [
  ['level', levelStore],
  [
    'memory',
    () => {
      const store = createFakeGrantStore();
      return Promise.resolve({ store, reopen: () => Promise.resolve(store as GrantStore) });
    },
  ],
] as const) {
  describe(`revocation feed: ${name}`, () => {
    it('numbers events from 1 in the revocation write, and goes on after a restart', async () => {
      const { store, reopen } = await open();
      await store.create(record('gr_a'));
      const feed = new RevocationFeed(store);
      const revoked = { ...record('gr_a'), revokedAt: '2026-01-01T00:00:00.000Z' };
      const [e1] = await feed.apply([revoked], [grantEvent('gr_a')]);
      expect(e1).toMatchObject({ seq: 1, kind: 'grant', grantId: 'gr_a' });
      // The record changed in the same write.
      expect((await store.get('gr_a'))?.revokedAt).toBe(revoked.revokedAt);
      const again = new RevocationFeed(await reopen());
      const [e2, e3] = await again.apply(
        [],
        [
          grantEvent('gr_b'),
          { kind: 'runtime', runtimeId: 'rt_a', at: '2026-01-01T00:00:00.000Z', exp: 3000 },
        ],
      );
      expect([e2?.seq, e3?.seq]).toEqual([2, 3]);
      const page = await again.since(0, 0);
      expect(page.events.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(page).toMatchObject({ head: 3, floor: 0 });
      expect((await again.since(2, 0)).events.map((e) => e.seq)).toEqual([3]);
    });

    it('refuses a since beyond the head: revocation_snapshot_required', async () => {
      const { store } = await open();
      const feed = new RevocationFeed(store);
      expect(await codeOf(feed.since(1, 0))).toBe('revocation_snapshot_required');
    });

    it('forgets a prefix of expired events, and then refuses a since below the floor', async () => {
      const { store } = await open();
      const feed = new RevocationFeed(store, { graceSeconds: 10 });
      await feed.apply(
        [],
        [grantEvent('gr_1', 100), grantEvent('gr_2', 5000), grantEvent('gr_3', 100)],
      );
      // gr_3 expired too, but behind gr_2, still needed: the floor stays exact.
      expect(await feed.prune(200)).toBe(1);
      expect(await codeOf(feed.since(0, 0))).toBe('revocation_snapshot_required');
      const page = await feed.since(1, 0);
      expect(page).toMatchObject({ floor: 1, head: 3 });
      expect(page.events.map((e) => e.seq)).toEqual([2, 3]);
      const now = await feed.revokedNow(200);
      expect(now).toEqual({ seq: 3, grants: [{ id: 'gr_2', exp: 5000 }], runtimes: [] });
    });

    it('a long-poll is answered by the next write', async () => {
      const { store } = await open();
      // Woken by the write, not by the end of a wait longer than the test may run.
      const feed = new RevocationFeed(store, { maxWaitMs: 600_000 });
      const waiting = feed.since(0, 600_000);
      await untilWaiting(feed, 1);
      await feed.apply([], [grantEvent('gr_x')]);
      const page = await waiting;
      expect(page.events.map((e) => e.seq)).toEqual([1]);
      expect(feed.waiting).toBe(0);
    });

    it('bounds the waiting subscribers: revocation_feed_full; a subscriber that left frees its place', async () => {
      const { store } = await open();
      const feed = new RevocationFeed(store, { maxSubscribers: 2 });
      const gone = new AbortController();
      const a = feed.since(0, 5_000, gone.signal);
      const b = feed.since(0, 5_000);
      await untilWaiting(feed, 2);
      expect(await codeOf(feed.since(0, 5_000))).toBe('revocation_feed_full');
      gone.abort();
      expect((await a).events).toEqual([]);
      const c = feed.since(0, 5_000);
      await untilWaiting(feed, 2);
      await feed.apply([], [grantEvent('gr_y')]);
      expect((await b).events).toHaveLength(1);
      expect((await c).events).toHaveLength(1);
    });

    it('a failed write gives its sequence numbers back (no gap, no reuse of a written one)', async () => {
      const { store } = await open();
      const feed = new RevocationFeed(store);
      const realUpdate = store.update.bind(store);
      let fail = true;
      store.update = (records, events) =>
        fail ? Promise.reject(new Error('disk full')) : realUpdate(records, events);
      await expect(feed.apply([], [grantEvent('gr_f')])).rejects.toThrow('disk full');
      fail = false;
      const [e] = await feed.apply([], [grantEvent('gr_g')]);
      expect(e?.seq).toBe(1);
    });
  });
}

describe('the feed pruner (createGrants runs it on the requestId sweep cadence)', () => {
  it('a prune the store refuses is logged and counted, then tried again, never swallowed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-feed-'));
    dirs.push(dir);
    const db = await openDatabase(dir);
    const feed = new RevocationFeed(new LevelGrantStore(db), { graceSeconds: 0 });
    await feed.apply([], [{ kind: 'runtime', runtimeId: 'rt_a', at: 'x', exp: 1 }]);
    // The real store failing: LevelDB closed under the pruner.
    await db.close();
    const errors: object[] = [];
    const logger = {
      info: () => undefined,
      warn: () => undefined,
      error: (o: object) => errors.push(o),
    };
    const metrics = createMetrics({ defaultMetrics: false });
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const stop = pruneFeedEvery(feed, 1000, { logger, metrics, now: () => 10_000 });
      await vi.advanceTimersByTimeAsync(1000);
      await vi.waitFor(() => {
        expect(errors).toHaveLength(1);
      });
      await vi.advanceTimersByTimeAsync(1000);
      await vi.waitFor(() => {
        expect(errors).toHaveLength(2);
      });
      stop();
      await vi.advanceTimersByTimeAsync(5000);
      expect(errors).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
    expect(errors[0]).toMatchObject({ event: 'revocation_feed_prune_failed' });
    expect((await metrics.revocationFeedPruneFailures.get()).values[0]?.value).toBe(2);
    const text = await metrics.registry.metrics();
    expect(text).toContain('grantor_revocation_feed_prune_failures_total 2');
  });
});
