import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { LevelTokenStore } from './token-store.level.js';
import { MemoryTokenStore } from './token-store.memory.js';
import type { TokenRecord, TokenStore } from './token-store.port.js';

const record = (id: string, extra: Partial<TokenRecord> = {}): TokenRecord => ({
  id,
  role: 'auditor',
  actor: 'alice',
  secretHash: 'ab'.repeat(32),
  createdAt: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-02-01T00:00:00.000Z',
  ...extra,
});

const dirs: string[] = [];
const dbs: Database[] = [];
afterAll(async () => {
  for (const db of dbs) await db.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function levelStore(): Promise<{ store: TokenStore; db: Database }> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-tokens-'));
  dirs.push(dir);
  const db = await openDatabase(dir);
  dbs.push(db);
  return { store: new LevelTokenStore(db), db };
}

const adapters: [string, () => Promise<TokenStore>][] = [
  ['memory', () => Promise.resolve(new MemoryTokenStore())],
  ['level', async () => (await levelStore()).store],
];

describe.each(adapters)('token store contract (%s)', (_name, make) => {
  it('puts, gets, overwrites and lists records', async () => {
    const store = await make();
    expect(await store.get('tok_0000000000000001')).toBeUndefined();
    await store.put(record('tok_0000000000000001'));
    await store.put(record('tok_0000000000000002', { role: 'operator' }));
    await store.put(record('tok_0000000000000001', { revokedAt: '2026-01-02T00:00:00.000Z' }));
    expect(await store.get('tok_0000000000000001')).toEqual(
      record('tok_0000000000000001', { revokedAt: '2026-01-02T00:00:00.000Z' }),
    );
    expect((await store.list()).map((r) => r.id).sort()).toEqual([
      'tok_0000000000000001',
      'tok_0000000000000002',
    ]);
  });
});

describe('level token store', () => {
  it('refuses a corrupt record with operator_store_corrupt', async () => {
    const { store, db } = await levelStore();
    await db
      .sublevel('operator-tokens', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      .put('tok_0000000000000003', '{"id":"tok_0000000000000003","role":"root"}');
    await expect(store.get('tok_0000000000000003')).rejects.toMatchObject({
      code: 'operator_store_corrupt',
    });
    await db
      .sublevel('operator-tokens', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      .put('tok_0000000000000004', 'not json');
    await expect(store.get('tok_0000000000000004')).rejects.toMatchObject({
      code: 'operator_store_corrupt',
    });
  });
});
