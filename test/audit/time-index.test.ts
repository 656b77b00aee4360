/**
 * The time index on a store written before it (issue 16): built once at first start from
 * every entry (terms before `ixfrom` too), logged, checked against the entries by the
 * independent checker of the crash harness (tiles-check.ts), and used by the next query.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryAnchor } from '../../src/audit/anchor.memory.js';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import { createAudit } from '../../src/audit/index.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { captureLogger, tempDir } from './helpers.js';
import { testSigner } from './signer.js';
import { timeIndexDisagrees } from './tiles-check.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let opened: { dir: string; db: Database } | undefined;
afterAll(async () => {
  await opened?.db.close();
  if (opened !== undefined) await rm(opened.dir, { recursive: true, force: true });
});

describe('the audit time index on an older store', () => {
  it('indexes a store written before the time index once, at first start, and logs it', async () => {
    const dir = await tempDir('grantor-audit-time-index-');
    const db = await openDatabase(dir);
    opened = { dir, db };
    const origin = 'grantor.test/query';
    const anchor = new MemoryAnchor();
    const signer = testSigner(origin);
    let minute = 0;
    const deps = { db, anchor, signer, now: () => Date.UTC(2026, 0, 1, 0, minute) };
    const first = createAudit({ origin, minAnchorIntervalMs: 0 }, deps);
    await first.provision();
    await first.ready();
    for (minute = 0; minute < 30; minute += 1) {
      await first.append({
        type: 'runtime.enroll',
        subject: `rt_${minute}`,
        digest: sha(`${minute}`),
      });
    }
    await first.close();
    // As a store of the previous version left it: no time keys, no mark, terms from seq 20.
    const sub = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const older: string[] = [];
    for await (const key of sub.keys()) {
      const seq = Number(key.slice(key.lastIndexOf('!') + 1));
      if (/^[mk]!/.test(key) || key === 'ixdone' || (key.startsWith('x!') && seq < 20)) {
        older.push(key);
      }
    }
    await sub.batch(older.map((key) => ({ type: 'del' as const, key })));
    await sub.put('ixfrom', '20');
    expect(await timeIndexDisagrees(db)).toMatch(/missing/);

    const logger = captureLogger();
    const second = createAudit(
      { origin, minAnchorIntervalMs: 0, maxQueryScan: 4 },
      { ...deps, logger },
    );
    await second.ready();
    expect(logger.lines.map((l) => l.obj)).toContainEqual(
      expect.objectContaining({ event: 'audit_index_built', entries: 30 }),
    );
    expect(await timeIndexDisagrees(db)).toBeUndefined();
    expect(await new LevelAuditStore(db).indexedFrom()).toBe(0);
    const since = new Date(Date.UTC(2026, 0, 1, 0, 27)).toISOString();
    const page = await second.query({ since }, 0, 10);
    expect(page.entries.map((e) => e.subject)).toEqual(['rt_27', 'rt_28', 'rt_29']);
    const early = await second.query({ subject: 'rt_3' }, 0, 10);
    expect(early.entries.map((e) => e.seq)).toEqual([3]);
    // Once: the next start finds the mark.
    await second.close();
    const third = createAudit({ origin, minAnchorIntervalMs: 0 }, { ...deps, logger });
    logger.lines.length = 0;
    await third.ready();
    expect(logger.lines.map((l) => (l.obj as { event?: string }).event)).not.toContain(
      'audit_index_built',
    );
    await third.close();
  });
});
