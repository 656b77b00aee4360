/**
 * One contract for the grant store, run against the LevelDB adapter (real classic-level,
 * including a reopen: a restart forgets no grant, link or requestId) and the memory fake.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryGrantStore, type GrantRecord, type GrantStore } from '../../src/grants/index.js';
import { LevelGrantStore } from '../../src/grants/grant-store.level.js';
import { openDatabase } from '../../src/shared/db.level.js';

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
  const store = new MemoryGrantStore();
  return Promise.resolve({
    store,
    reopen: () => Promise.resolve(store),
    close: () => Promise.resolve(),
  });
});
