/**
 * One contract for the grant store, run against the LevelDB adapter (real classic-level,
 * including a reopen: a restart forgets no grant, link or requestId) and the memory fake;
 * requestId pruning (the expiry index, bounded batches, ids stored before the index, the
 * sweeper's timer and its stop when the database closes); and, through the pipeline on the
 * real parts, that pruning never lets a request be replayed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { GrantsWiring } from '../../src/grants/index.js';
import {
  createFakeGrantStore,
  RequestPruner,
  createGrants,
  type GrantRecord,
  type GrantStore,
} from '../../src/grants/index.js';
import { LevelGrantStore } from '../../src/grants/grant-store.level.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { createEccAk } from '../attestation/tools.js';
import { repoRoot } from '../rig/sim.js';
import { attest, enroll, grantBody, signed, startRig } from './rig.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const record = (
  grantId: string,
  parent: string | null,
  root: string,
  depth: number,
): GrantRecord => ({
  grantId,
  runtimeId: 'rt_a',
  action: 'tickets.read',
  resource: 'ticket:1',
  audience: 'gw',
  parent,
  root,
  depth,
  iat: 100,
  exp: 200,
  auditSeq: 7,
  revokedAt: null,
  redemption: null,
});

function contract(
  name: string,
  open: () => Promise<{
    store: GrantStore;
    reopen: () => Promise<GrantStore>;
    close: () => Promise<void>;
  }>,
) {
  describe(`grant store contract: ${name}`, () => {
    it('stores grants, links children, updates, remembers requestIds, and keeps them across a reopen', async () => {
      const { store, reopen, close } = await open();
      expect(await store.get('gr_root')).toBeUndefined();
      await store.create(record('gr_root', null, 'gr_root', 0));
      await store.create(record('gr_c1', 'gr_root', 'gr_root', 1));
      await store.create(record('gr_c2', 'gr_root', 'gr_root', 1));
      await store.create(record('gr_g1', 'gr_c1', 'gr_root', 2));
      expect((await store.children('gr_root')).sort()).toEqual(['gr_c1', 'gr_c2']);
      expect(await store.children('gr_c1')).toEqual(['gr_g1']);
      expect(await store.children('gr_g1')).toEqual([]);
      // A prefix of another id is not its parent.
      await store.create(record('gr_c10', 'gr_c', 'gr_c', 1));
      expect(await store.children('gr_c1')).toEqual(['gr_g1']);
      const c1 = await store.get('gr_c1');
      expect(c1).toEqual(record('gr_c1', 'gr_root', 'gr_root', 1));
      await store.update([
        { ...record('gr_c1', 'gr_root', 'gr_root', 1), revokedAt: '2026-01-01T00:00:00.000Z' },
        {
          ...record('gr_c2', 'gr_root', 'gr_root', 1),
          redemption: { at: '2026-01-01T00:00:00.000Z', audience: 'gw', outcome: 'started' },
        },
      ]);
      // A grant's own write carries the requestId of the request that produced it.
      await store.create(record('gr_with_id', null, 'gr_with_id', 0), {
        runtimeId: 'rt_a',
        requestId: 'req-g',
        expiresAt: 456,
      });
      expect(await store.hasRequest('rt_a', 'req-g')).toBe(true);
      expect(await store.hasRequest('rt_a', 'req-1')).toBe(false);
      await store.putRequest('rt_a', 'req-1', 123);
      expect(await store.hasRequest('rt_a', 'req-1')).toBe(true);
      expect(await store.hasRequest('rt_b', 'req-1')).toBe(false);
      // Separator characters in ids do not collide.
      await store.putRequest('rt_a!x', 'y', 1);
      expect(await store.hasRequest('rt_a', 'x!y')).toBe(false);
      const again = await reopen();
      expect((await again.get('gr_c1'))?.revokedAt).toBe('2026-01-01T00:00:00.000Z');
      expect((await again.get('gr_c2'))?.redemption?.outcome).toBe('started');
      expect((await again.children('gr_root')).sort()).toEqual(['gr_c1', 'gr_c2']);
      expect(await again.hasRequest('rt_a', 'req-1')).toBe(true);
      expect(await again.hasRequest('rt_a', 'req-g')).toBe(true);
      expect((await again.get('gr_with_id'))?.grantId).toBe('gr_with_id');
      await close();
    });

    it('lists the live requestIds (odd characters decoded, expired left out, bounded)', async () => {
      const { store, reopen, close } = await open();
      await store.putRequest('rt_a!x', 'y%21/z', 500);
      await store.putRequest('rt_b', 'old', 99);
      await store.putRequest('rt_b', 'edge', 100);
      const again = await reopen();
      const live = await again.liveRequests(100, 10);
      expect(live.complete).toBe(true);
      expect(live.ids.sort((a, b) => a.expiresAt - b.expiresAt)).toEqual([
        { runtimeId: 'rt_b', requestId: 'edge', expiresAt: 100 },
        { runtimeId: 'rt_a!x', requestId: 'y%21/z', expiresAt: 500 },
      ]);
      const bounded = await again.liveRequests(0, 2);
      expect(bounded).toMatchObject({ complete: false });
      expect(bounded.ids).toHaveLength(2);
      expect((await again.liveRequests(0, 3)).complete).toBe(true);
      await close();
    });

    it('prunes requestIds that expired before the cut-off, oldest first, at most `limit`, for good', async () => {
      const { store, reopen, close } = await open();
      for (const [id, exp] of [
        ['r300', 300],
        ['r100', 100],
        ['r200', 200],
        ['r400', 400],
      ] as const) {
        await store.putRequest('rt_p', id, exp);
      }
      // Expiry 300 is not before 300: kept (a request is fresh up to its expiry).
      expect(await store.pruneRequests(300, 1)).toBe(1);
      expect(await store.hasRequest('rt_p', 'r100')).toBe(false);
      expect(await store.hasRequest('rt_p', 'r200')).toBe(true);
      expect(await store.pruneRequests(300, 10)).toBe(1);
      expect(await store.pruneRequests(300, 10)).toBe(0);
      const again = await reopen();
      expect(await again.hasRequest('rt_p', 'r200')).toBe(false);
      expect(await again.hasRequest('rt_p', 'r300')).toBe(true);
      expect(await again.hasRequest('rt_p', 'r400')).toBe(true);
      // A pruned id used again is remembered again.
      await again.putRequest('rt_p', 'r100', 500);
      expect(await again.hasRequest('rt_p', 'r100')).toBe(true);
      expect(await again.pruneRequests(450, 10)).toBe(2);
      expect(await again.hasRequest('rt_p', 'r100')).toBe(true);
      expect(await again.pruneRequests(501, 10)).toBe(1);
      expect(await again.hasRequest('rt_p', 'r100')).toBe(false);
      await close();
    });
  });
}

contract('LevelDB', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-grant-store-'));
  dirs.push(dir);
  let db = await openDatabase(join(dir, 'db'));
  return {
    store: new LevelGrantStore(db),
    reopen: async () => {
      await db.close();
      db = await openDatabase(join(dir, 'db'));
      return new LevelGrantStore(db);
    },
    close: () => db.close(),
  };
});

contract('memory', () => {
  const store = createFakeGrantStore();
  return Promise.resolve({
    store,
    reopen: () => Promise.resolve(store),
    close: () => Promise.resolve(),
  });
});

describe('LevelDB requestId index', () => {
  async function level() {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-grant-prune-'));
    dirs.push(dir);
    const db = await openDatabase(join(dir, 'db'));
    const sub = db.sublevel('grants', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const keys = async (prefix: string) => sub.keys({ gte: prefix, lt: `${prefix}\uffff` }).all();
    return { db, sub, keys };
  }

  it('writes the expiry index with the id, and pruning leaves neither behind', async () => {
    const { db, keys } = await level();
    const store = new LevelGrantStore(db);
    for (let i = 0; i < 25; i++) await store.putRequest('rt_!x', `req!${i}`, 1000 + i);
    expect(await keys('q!')).toHaveLength(25);
    expect(await keys('x!')).toHaveLength(25);
    // Sorted by expiry whatever the number of digits.
    await store.putRequest('rt_b', 'late', 10_000_000_000_000);
    expect((await keys('x!')).at(-1)).toContain('late');
    expect(await store.pruneRequests(1010, 4)).toBe(4);
    expect(await store.pruneRequests(1010, 100)).toBe(6);
    expect(await store.hasRequest('rt_!x', 'req!9')).toBe(false);
    expect(await store.hasRequest('rt_!x', 'req!10')).toBe(true);
    expect(await store.pruneRequests(Number.MAX_SAFE_INTEGER, 100)).toBe(16);
    expect(await keys('q!')).toEqual([]);
    expect(await keys('x!')).toEqual([]);
    await db.close();
  });

  it('forgets ids stored before the index existed, in bounded slices, once per process', async () => {
    const { db, sub, keys } = await level();
    // What an earlier version wrote: the id without an index entry.
    for (let i = 0; i < 7; i++) await sub.put(`q!rt_old!req-${i}`, String(100 + i));
    await sub.put('q!rt_old!zz-live', String(10_000));
    const store = new LevelGrantStore(db);
    expect(await store.pruneRequests(1000, 3)).toBe(3);
    expect(await store.pruneRequests(1000, 3)).toBe(3);
    expect(await store.pruneRequests(1000, 3)).toBe(1);
    expect(await keys('q!')).toEqual(['q!rt_old!zz-live']);
    // The pass is over: an unindexed entry that appears now is not looked for again.
    await sub.put('q!rt_old!req-late', '1');
    expect(await store.pruneRequests(1000, 3)).toBe(0);
    expect(await store.hasRequest('rt_old', 'req-late')).toBe(true);
    await db.close();
  });
});

describe('LevelDB live requestIds', () => {
  it('lists ids stored without an index entry too, and keeps an unreadable expiry as live', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-grant-live-'));
    dirs.push(dir);
    const db = await openDatabase(join(dir, 'db'));
    const sub = db.sublevel('grants', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await sub.put('q!rt_old!legacy', '5000');
    await sub.put('q!rt_old!garbled', 'not-a-number');
    const store = new LevelGrantStore(db);
    await store.putRequest('rt_new', 'r1', 6000);
    const { ids, complete } = await store.liveRequests(4000, 10);
    expect(complete).toBe(true);
    expect(ids.map((r) => `${r.runtimeId}/${r.requestId}/${r.expiresAt}`).sort()).toEqual([
      'rt_new/r1/6000',
      'rt_old/garbled/Infinity',
      'rt_old/legacy/5000',
    ]);
    await db.close();
  });
});

describe('RequestPruner', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sweeps in batches up to maxBatches, with the grace before the cut-off', async () => {
    const store = createFakeGrantStore();
    for (let i = 0; i < 35; i++) await store.putRequest('rt_a', `r${i}`, 1000 + i);
    const calls: [number, number][] = [];
    const spy = {
      pruneRequests: (before: number, limit: number) => {
        calls.push([before, limit]);
        return store.pruneRequests(before, limit);
      },
    };
    const pruner = new RequestPruner(
      spy,
      { intervalMs: 0, batch: 10, maxBatches: 2, graceMs: 500 },
      () => 2000,
    );
    expect(await pruner.sweep()).toBe(20);
    expect(calls).toEqual([
      [1500, 10],
      [1500, 10],
    ]);
    expect(await pruner.sweep()).toBe(15);
    expect(await pruner.sweep()).toBe(0);
    expect(store.requests.size).toBe(0);
  });

  it('runs on a timer until stopped; createGrants stops its sweeper when the database closes', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const store = createFakeGrantStore();
    await store.putRequest('rt_a', 'old', 1);
    const pruner = new RequestPruner(store, {
      intervalMs: 1000,
      batch: 10,
      maxBatches: 1,
      graceMs: 0,
    });
    pruner.start();
    expect(pruner.active).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    await vi.waitFor(() => {
      expect(store.requests.size).toBe(0);
    });
    await pruner.stop();
    expect(pruner.active).toBe(false);
    expect(vi.getTimerCount()).toBe(0);

    const dir = await mkdtemp(join(tmpdir(), 'grantor-grant-sweeper-'));
    dirs.push(dir);
    const db = await openDatabase(join(dir, 'db'));
    // The services are not called by the sweeper (the keys only by the snapshot signer).
    createGrants({ issuer: 'grantor-test', maxTtlSeconds: 60, requestPruneIntervalMs: 1000 }, {
      db,
      keys: {},
    } as unknown as GrantsWiring);
    // The requestId sweeper and the revocation feed's pruner.
    expect(vi.getTimerCount()).toBe(2);
    await db.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('pruning through the pipeline (real swtpm, SoftHSM2, Cedar, LevelDB)', () => {
  it('a replay inside the window is refused (after a restart too); once pruned, the replay is stale', async () => {
    const rig = await startRig();
    try {
      await createEccAk(rig.tools);
      await rig.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', '0x81010003']);
      const rt = await enroll(
        rig,
        'prune-agent',
        { team: 'support' },
        { ctx: '0x81010003', pub: 'ak.pub' },
        'rsa',
      );
      const session = await attest(rig, rt);
      const skewMs = 2000;
      // A new service each time: its in-memory guard is empty, only the store remembers.
      const service = () =>
        rig.grantsWithPolicy(join(repoRoot, 'policies/default'), {
          clockSkewSeconds: skewMs / 1000,
          requestPruneIntervalMs: 0,
        });
      const t0 = Date.now();
      const req = signed(
        grantBody(rt, { issuedAt: new Date(t0).toISOString() }),
        session.attestationId,
        session.key.privateKey,
      );
      const code = (p: Promise<unknown>) =>
        p.then(
          () => 'issued',
          (e: unknown) => (e as { code?: string }).code,
        );
      expect(await code((await service()).request(req, new Date(t0)))).toBe('issued');

      const store = new LevelGrantStore(rig.db);
      const prunerAt = (ms: number) =>
        new RequestPruner(
          store,
          { intervalMs: 0, batch: 100, maxBatches: 10, graceMs: skewMs },
          () => ms,
        );
      // Inside the window (and its grace) a sweep keeps the id, and the replay is refused.
      expect(await prunerAt(t0 + 2 * skewMs).sweep()).toBe(0);
      expect(await store.hasRequest(rt.runtimeId, req.requestId as string)).toBe(true);
      expect(await code((await service()).request(req, new Date(t0 + skewMs)))).toBe(
        'request_replayed',
      );

      // Past expiry (issuedAt + skew) plus grace: gone from the store...
      expect(await prunerAt(t0 + 2 * skewMs + 1).sweep()).toBe(1);
      expect(await store.hasRequest(rt.runtimeId, req.requestId as string)).toBe(false);
      // ...and the same bytes replayed now are refused as stale, before the store is asked.
      expect(await code((await service()).request(req, new Date(t0 + 2 * skewMs + 1)))).toBe(
        'request_stale',
      );
      expect(await code((await service()).request(req, new Date(t0 + skewMs + 1)))).toBe(
        'request_stale',
      );
    } finally {
      await rig.close();
    }
  });
});
