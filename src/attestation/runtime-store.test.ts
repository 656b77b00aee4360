/** One contract for both runtime stores: the in-memory one and the LevelDB adapter. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { LevelRuntimeStore } from './runtime-store.level.js';
import { createFakeRuntimeStore } from './runtime-store.memory.js';
import { upgradeRecord, type RuntimeRecord, type RuntimeStore } from './runtime-store.port.js';

const record = (id: string, name: string, ek: string): RuntimeRecord => ({
  runtimeId: id,
  name,
  labels: { team: 'payments' },
  requestedLabels: { team: 'all' },
  labelSource: 'rule:fleet',
  activationState: 'active',
  ek: {
    publicKeySha256: '33'.repeat(32),
    certificate: { issuer: 'CN=ca', serialNumber: '01', chainSha256: ['44'.repeat(32)] },
    tpm: { manufacturer: 'id:53544D20', model: 'swtpm', version: 'id:20191023' },
  },
  released: null,
  state: 'pending_activation',
  ekCertified: true,
  ekFingerprint: ek,
  akPublic: 'AAAA',
  akName: '000b' + '11'.repeat(32),
  secretDigest: '22'.repeat(32),
  createdAt: '2030-01-01T00:00:00.000Z',
  counters: null,
  lastAttestation: null,
});

const opened: { db: Database; dir: string }[] = [];

afterAll(async () => {
  for (const { db, dir } of opened) {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
});

const stores: [string, () => Promise<RuntimeStore>][] = [
  ['memory', () => Promise.resolve(createFakeRuntimeStore())],
  [
    'level',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'grantor-rt-store-'));
      const db = await openDatabase(join(dir, 'db'));
      opened.push({ db, dir });
      return new LevelRuntimeStore(db);
    },
  ],
];

describe.each(stores)('RuntimeStore contract (%s)', (_name, make) => {
  it('creates, finds by EK and by name, updates and deletes with its indices', async () => {
    const store = await make();
    const r = record('rt_a', 'agent/7 é', 'ek1');
    expect(await store.get('rt_a')).toBeUndefined();
    await store.create(r);
    expect(await store.get('rt_a')).toEqual(r);
    expect(await store.findByEk('ek1')).toBe('rt_a');
    expect(await store.findByName('agent/7 é')).toBe('rt_a');
    expect(await store.findByEk('ek2')).toBeUndefined();
    const active: RuntimeRecord = {
      ...r,
      state: 'active',
      secretDigest: null,
      counters: { resetCount: 1, restartCount: 2 },
      lastAttestation: { attestationId: 'at_1', verdict: 'trusted', reasons: [], at: r.createdAt },
    };
    await store.update(active);
    expect(await store.get('rt_a')).toEqual(active);
    await store.delete(active);
    expect(await store.get('rt_a')).toBeUndefined();
    expect(await store.findByEk('ek1')).toBeUndefined();
    expect(await store.findByName('agent/7 é')).toBeUndefined();
  });

  it('keeps runtimes apart', async () => {
    const store = await make();
    await store.create(record('rt_a', 'a', 'ek1'));
    await store.create(record('rt_b', 'b', 'ek2'));
    expect(await store.findByEk('ek2')).toBe('rt_b');
    expect((await store.get('rt_a'))?.name).toBe('a');
  });
});

describe('records stored before operators assigned identity', () => {
  it('keep their self-claimed labels only as a request, and wait for approval again', () => {
    const {
      requestedLabels: _r,
      labelSource: _s,
      activationState: _a,
      ek: _e,
      released: _d,
      ...legacy
    } = record('rt_old', 'old', 'ek9');
    const upgraded = upgradeRecord({ ...legacy, state: 'active' } as unknown as RuntimeRecord);
    expect(upgraded.labels).toEqual({});
    expect(upgraded.requestedLabels).toEqual({ team: 'payments' });
    expect(upgraded.state).toBe('pending_approval');
    expect(upgraded.labelSource).toBeNull();
  });
});
