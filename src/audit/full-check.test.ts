/**
 * `grantor audit verify --full` on a real LevelDB store: a good store replays to OK (with a
 * progress bar on stderr); an old entry, an old tile or an extend value edited on disk,
 * which the bounded start-up does not read, each fail with the reason that names them.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { MemoryAnchor } from './anchor.memory.js';
import { LevelAuditStore } from './audit-store.level.js';
import { runAuditCli } from './cli.js';
import { extendDigest } from './anchor.port.js';
import type { AuditStore, StoredBatch } from './audit-store.port.js';
import type { CheckpointSigner } from './checkpoint.js';
import type { AuditEntry } from './entry.js';
import { buildEntry, entryHash } from './entry.js';
import { createAudit } from './index.js';
import { leafHash } from './merkle.js';
import type { PeriodStartedFacts } from './facts.js';
import type { PeriodRecord } from './periods.js';
import { TiledTree } from './tiled-tree.js';
import { AuditLog } from './log.js';
import { LevelPeriodStore } from './period-store.level.js';

let dir: string;
let db: Database;

const options = {
  origin: 'grantor.test/full',
  maxBatchSize: 64,
  minAnchorIntervalMs: 0,
  anchorRetryDeadlineMs: 0,
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-full-check-'));
  db = await openDatabase(join(dir, 'db'));
  const log = new AuditLog(new LevelAuditStore(db), new MemoryAnchor(), options);
  await log.provision();
  await log.open();
  for (let i = 0; i < 700; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, 700 - i) }, (_, k) =>
        log.append({
          type: 'grant.decision',
          subject: `rt_${i + k}`,
          decision: 'allow',
          digest: createHash('sha256')
            .update(`r${i + k}`)
            .digest('hex'),
        }),
      ),
    );
  }
  await log.close();
});

afterAll(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

async function full(): Promise<{ code: number; out: string; progress: string }> {
  const out: string[] = [];
  let progress = '';
  const code = await runAuditCli(
    ['verify', '--full'],
    {
      openPeriods: () => Promise.resolve(new LevelPeriodStore(db)),
      progress: (t) => (progress += t),
    },
    { out: (l) => out.push(l), err: (l) => out.push(l) },
  );
  return { code, out: out.join('\n'), progress };
}

const sub = () => db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });

/** Edit one stored value, run the check, put the value back. */
async function edited(
  key: string,
  change: (v: string) => string,
): Promise<{ code: number; out: string }> {
  const original = (await sub().get(key)) ?? '';
  await sub().put(key, change(original));
  try {
    return await full();
  } finally {
    await sub().put(key, original);
  }
}

describe('grantor audit verify --full', () => {
  it('replays a good store to OK, with a progress bar on stderr', async () => {
    const r = await full();
    expect(r.out).toMatch(/^OK: 700 entries in 12 batches replayed from the first/);
    expect(r.out).toContain('periods: 1 replayed in order; current grantor.test/full');
    expect(r.progress).toContain('100% 700/700 entries');
    expect(r.code).toBe(0);
  });

  it('names an old entry rewritten with a consistent hash (store_entry_broken)', async () => {
    const r = await edited(`e!${'10'.padStart(16, '0')}`, (v) => {
      const forged = { ...(JSON.parse(v) as AuditEntry), subject: 'rt_forged' };
      return JSON.stringify({ ...forged, hash: entryHash(forged) });
    });
    expect(r.out).toMatch(/^FAIL: .*\(store_entry_broken\)$/);
    expect(r.code).toBe(1);
  });

  it('names an old tile edited on disk (store_tiles_mismatch)', async () => {
    const r = await edited(`t!00!${'0'.padStart(16, '0')}`, (v) => {
      const b = Buffer.from(v, 'base64');
      b[100] = (b[100] ?? 0) ^ 1;
      return b.toString('base64');
    });
    expect(r.out).toMatch(/^FAIL: audit tile 0\/0 .*\(store_tiles_mismatch\)$/);
    expect(r.code).toBe(1);
  });

  it('names an old batch record whose extend value was edited (store_batch_malformed)', async () => {
    const r = await edited(`b!${'3'.padStart(16, '0')}`, (v) =>
      JSON.stringify({ ...(JSON.parse(v) as object), extend: 'cd'.repeat(32) }),
    );
    expect(r.out).toMatch(/^FAIL: .*batch record 3 .*\(store_batch_malformed\)$/);
    expect(r.code).toBe(1);
  });

  it('is a usage error without a local store', async () => {
    const out: string[] = [];
    const code = await runAuditCli(
      ['verify', '--full'],
      {},
      { out: (l) => out.push(l), err: (l) => out.push(l) },
    );
    expect(code).toBe(2);
  });
});

/**
 * Across log periods: a log switched twice replays to OK period by period; a rewritten
 * entry of a frozen period, a frozen period extended after its switch (every hash, tile,
 * batch root and extend value of the extension made consistent) and a link entry naming
 * another root than the frozen period ends at (its period's tree and anchor chain made
 * consistent around it) are each named with a non-zero exit.
 */
describe('grantor audit verify --full across log periods', () => {
  const ORIGIN = 'grantor.test/full-periods';
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signer: CheckpointSigner = {
    keyName: ORIGIN,
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
  const opened: { dir: string; db: Database }[] = [];
  afterAll(async () => {
    for (const o of opened) {
      await o.db.close();
      await rm(o.dir, { recursive: true, force: true });
    }
  });

  /** Period 0: 5 entries; period 1: its link and 7; period 2 (current): its link only. */
  async function switchedTwice(): Promise<{ db: Database; periods: LevelPeriodStore }> {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-full-periods-'));
    const pdb = await openDatabase(join(dir, 'db'));
    opened.push({ dir, db: pdb });
    const audit = createAudit(
      { origin: ORIGIN, minAnchorIntervalMs: 0 },
      { db: pdb, anchor: new MemoryAnchor(), signer },
    );
    await audit.provision();
    await audit.ready();
    const ev = (i: number) => ({
      type: 'grant.decision',
      subject: `rt_${i}`,
      decision: 'allow',
      digest: createHash('sha256').update(`p${i}`).digest('hex'),
    });
    for (let i = 0; i < 5; i++) await audit.append(ev(i));
    await audit.startPeriod('op_first');
    for (let i = 5; i < 12; i++) await audit.append(ev(i));
    await audit.startPeriod('op_second');
    await audit.close();
    return { db: pdb, periods: new LevelPeriodStore(pdb) };
  }

  async function fullOf(pdb: Database): Promise<{ code: number; out: string; progress: string }> {
    const out: string[] = [];
    let progress = '';
    const code = await runAuditCli(
      ['verify', '--full'],
      {
        openPeriods: () => Promise.resolve(new LevelPeriodStore(pdb)),
        progress: (t) => (progress += t),
      },
      { out: (l) => out.push(l), err: (l) => out.push(l) },
    );
    return { code, out: out.join('\n'), progress };
  }

  /** `entries` appended to a store as one batch, its tiles, root and extend value consistent. */
  async function appendConsistent(
    store: AuditStore,
    entry: (seq: number, prevHash: string) => AuditEntry,
    at: { size: number; index: number; extend: string; prevHash: string },
  ): Promise<void> {
    const tree =
      at.size === 0
        ? new TiledTree({ readTile: () => Promise.resolve(undefined) })
        : await TiledTree.load(store, at.size);
    const e = entry(at.size, at.prevHash);
    tree.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
    const root = tree.root();
    await store.appendBatch({
      entries: [e],
      batch: {
        index: at.index,
        size: at.size + 1,
        root: root.toString('hex'),
        extend: extendDigest(Buffer.from(at.extend, 'hex'), root).toString('hex'),
      },
      bodies: [],
      tiles: tree.writes(),
    });
  }

  it('replays every period in order to OK, with one progress bar over all of them', async () => {
    const { db: pdb } = await switchedTwice();
    const r = await fullOf(pdb);
    expect(r.out).toMatch(/^OK: 14 entries in \d+ batches replayed from the first/);
    expect(r.out).toContain(
      'periods: 3 replayed in order, each link entry and registry record naming the recomputed end',
    );
    expect(r.out).toContain(`current ${ORIGIN}/period-2`);
    expect(r.progress).toContain('100% 14/14 entries');
    expect(r.code).toBe(0);
  });

  it('names an entry of a frozen period rewritten with a consistent hash (store_batch_root_mismatch)', async () => {
    const { db: pdb } = await switchedTwice();
    const p1 = pdb.sublevel('audit-p1', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const key = `e!${'3'.padStart(16, '0')}`;
    const forged = { ...(JSON.parse((await p1.get(key)) ?? '') as AuditEntry), subject: 'rt_x' };
    await p1.put(key, JSON.stringify({ ...forged, hash: entryHash(forged) }));
    const r = await fullOf(pdb);
    // Entry 3 closes batch 3: its root no longer matches, before entry 4's link breaks.
    expect(r.out).toBe(
      'FAIL: log period 1: audit store batch 3 does not match its entries (store_batch_root_mismatch)',
    );
    expect(r.code).toBe(1);
  });

  it('names a frozen period extended after its switch (period_link_mismatch)', async () => {
    const { db: pdb, periods } = await switchedTwice();
    const p1 = periods.store(1);
    const [last] = (await p1.lastBatches(1)) as StoredBatch[];
    const entries: AuditEntry[] = [];
    for await (const e of p1.readEntries(0)) entries.push(e as AuditEntry);
    if (last === undefined) throw new Error('period 1 has no batch');
    await appendConsistent(
      p1,
      (seq, prevHash) =>
        buildEntry(
          {
            type: 'grant.decision',
            subject: 'rt_late',
            decision: 'allow',
            digest: 'ab'.repeat(32),
          },
          seq,
          new Date().toISOString(),
          prevHash,
        ),
      {
        size: last.size,
        index: last.index + 1,
        extend: last.extend,
        prevHash: entries.at(-1)?.hash ?? '',
      },
    );
    const r = await fullOf(pdb);
    expect(r.out).toMatch(
      /^FAIL: the record of log period 2 does not name the end recomputed from period 1 .*\(period_link_mismatch\)$/,
    );
    expect(r.code).toBe(1);
  });

  it('names a link entry naming another root, its own period made consistent (period_link_mismatch)', async () => {
    const { db: pdb, periods } = await switchedTwice();
    const record = (await periods.readRecord(2)) as PeriodRecord;
    const p2 = periods.store(2);
    let link: AuditEntry | undefined;
    for await (const e of p2.readEntries(0, 1)) link = e as AuditEntry;
    if (link === undefined) throw new Error('period 2 has no link');
    const { hash: _hash, ...body } = link;
    const forged = {
      ...body,
      facts: { ...(body.facts as PeriodStartedFacts), previousRoot: 'cd'.repeat(32) },
    };
    await appendConsistent(p2, () => ({ ...forged, hash: entryHash(forged) }), {
      size: 0,
      index: 0,
      extend: record.previous.extend,
      prevHash: '',
    });
    const r = await fullOf(pdb);
    expect(r.out).toMatch(
      /^FAIL: the first entry of log period 2 is not its link to the recomputed end of period 1 \(previous checkpoint\) \(period_link_mismatch\)$/,
    );
    expect(r.code).toBe(1);
  });
});
