import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { LevelApprovalStore } from './approval-store.level.js';
import { MemoryApprovalStore } from './approval-store.memory.js';
import type { ApprovalRecord, ApprovalStore } from './approval-store.port.js';

const record = (id: string, target: string, createdAt: string): ApprovalRecord => ({
  id,
  act: 'key.destroy',
  params: { kid: 'k1' },
  target,
  requestedBy: { id: 'tok_a', name: 'a', role: 'key_custodian' },
  createdAt,
  expiresAt: '2027-01-01T00:00:00.000Z',
  approvals: [],
});

const T1 = '1'.repeat(64);
const T2 = '2'.repeat(64);
const dirs: string[] = [];
const dbs: Database[] = [];
afterAll(async () => {
  for (const db of dbs) await db.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function level(): Promise<{ store: ApprovalStore; db: Database }> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-approvals-'));
  dirs.push(dir);
  const db = await openDatabase(dir);
  dbs.push(db);
  return { store: new LevelApprovalStore(db), db };
}

describe.each([
  ['memory', (): Promise<ApprovalStore> => Promise.resolve(new MemoryApprovalStore())],
  ['level', async (): Promise<ApprovalStore> => (await level()).store],
])('approval store contract (%s)', (_name, make) => {
  it('finds records by id and by target, lists newest first, keeps updates', async () => {
    const store = await make();
    await store.put(record('apr_0000000000000001', T1, '2026-01-01T00:00:00.000Z'));
    await store.put(record('apr_0000000000000002', T2, '2026-01-02T00:00:00.000Z'));
    await store.put(record('apr_0000000000000003', T1, '2026-01-03T00:00:00.000Z'));
    await store.put({
      ...record('apr_0000000000000001', T1, '2026-01-01T00:00:00.000Z'),
      consumedAt: '2026-01-04T00:00:00.000Z',
    });
    expect((await store.get('apr_0000000000000001'))?.consumedAt).toBe('2026-01-04T00:00:00.000Z');
    expect(await store.get('apr_0000000000000009')).toBeUndefined();
    expect((await store.byTarget(T1)).map((r) => r.id)).toEqual([
      'apr_0000000000000001',
      'apr_0000000000000003',
    ]);
    expect((await store.list(2)).map((r) => r.id)).toEqual([
      'apr_0000000000000003',
      'apr_0000000000000002',
    ]);
    // Open by requester: consumed ones drop out; legacy refs by their normalised name.
    expect((await store.openBy('a')).map((r) => r.id).sort()).toEqual([
      'apr_0000000000000002',
      'apr_0000000000000003',
    ]);
    await store.put({
      ...record('apr_0000000000000004', T2, '2026-01-05T00:00:00.000Z'),
      requestedBy: { id: 'tok_b', person: 'bob', name: 'Bob', role: 'key_custodian' },
    });
    expect((await store.openBy('bob')).map((r) => r.id)).toEqual(['apr_0000000000000004']);
  });
});

describe('level approval store', () => {
  it('refuses a corrupt record with operator_store_corrupt', async () => {
    const { store, db } = await level();
    await db
      .sublevel('approvals', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      .put('r!apr_0000000000000005', '{"id":"apr_0000000000000005"}');
    await expect(store.get('apr_0000000000000005')).rejects.toMatchObject({
      code: 'operator_store_corrupt',
    });
  });
});
