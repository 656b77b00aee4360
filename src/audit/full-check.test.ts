/**
 * `grantor audit verify --full` on a real LevelDB store: a good store replays to OK (with a
 * progress bar on stderr); an old entry, an old tile or an extend value edited on disk,
 * which the bounded start-up does not read, each fail with the reason that names them.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { MemoryAnchor } from './anchor.memory.js';
import { LevelAuditStore } from './audit-store.level.js';
import { runAuditCli } from './cli.js';
import type { AuditEntry } from './entry.js';
import { entryHash } from './entry.js';
import { AuditLog } from './log.js';

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
      openStore: () => Promise.resolve(new LevelAuditStore(db)),
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
