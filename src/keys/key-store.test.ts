/** One contract suite for every KeyStore adapter: LevelDB (real, temp folder) and memory. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { LevelKeyStore } from './key-store.level.js';
import { MemoryKeyStore } from './key-store.memory.js';
import type { KeyRecord, KeyStore } from './key-store.port.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function levelDb(): Promise<Database> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-keystore-'));
  const db = await openDatabase(dir);
  cleanups.push(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });
  return db;
}

const record = (kid: string, over: Partial<KeyRecord> = {}): KeyRecord => ({
  kid,
  purpose: 'grant',
  alg: 'ES256',
  state: 'active',
  hsmId: '0a1b',
  hsmLabel: 'grantor-grant-1',
  publicJwk: { kty: 'EC', crv: 'P-256', x: 'xx', y: 'yy' },
  createdAt: '2026-01-01T00:00:00.000Z',
  ...over,
});

const adapters: [string, () => Promise<KeyStore>][] = [
  ['LevelKeyStore', async () => new LevelKeyStore(await levelDb())],
  ['MemoryKeyStore', () => Promise.resolve(new MemoryKeyStore())],
];

describe.each(adapters)('%s contract', (_name, make) => {
  it('stores, reads and overwrites records by kid', async () => {
    const store = await make();
    expect(await store.list()).toEqual([]);
    expect(await store.get('a')).toBeUndefined();
    await store.putAll([
      record('a'),
      record('b', {
        purpose: 'audit',
        alg: 'EdDSA',
        publicJwk: { kty: 'OKP', crv: 'Ed25519', x: 'q' },
      }),
    ]);
    expect(await store.get('a')).toEqual(record('a'));
    await store.putAll([
      record('a', { state: 'retiring', retiringAt: '2026-01-02T00:00:00.000Z', maxExp: 123 }),
    ]);
    expect(await store.get('a')).toMatchObject({ state: 'retiring', maxExp: 123 });
    expect((await store.list()).map((r) => r.kid).sort()).toEqual(['a', 'b']);
  });

  it('returns copies, not live objects', async () => {
    const store = await make();
    const r = record('c');
    await store.putAll([r]);
    r.state = 'retired';
    const got = await store.get('c');
    expect(got?.state).toBe('active');
  });
});

describe('LevelKeyStore', () => {
  it.each([
    ['not JSON', '{'],
    ['not a key record', JSON.stringify({ kid: 'k', purpose: 'nope' })],
    ['a record under another kid', JSON.stringify(record('other'))],
  ])('refuses a stored value that is %s (key_store_corrupt)', async (_what, value) => {
    const db = await levelDb();
    await db.sublevel('keys').put('k', value);
    const store = new LevelKeyStore(db);
    await expect(store.get('k')).rejects.toMatchObject({ code: 'key_store_corrupt' });
    await expect(store.list()).rejects.toMatchObject({ code: 'key_store_corrupt' });
  });
});
