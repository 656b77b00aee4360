/**
 * The entry index, the request bodies and the entries are one synced LevelDB batch: after
 * SIGKILLs at random moments of appending (index-crash-child.ts, the real adapter), the
 * index (terms and times) names exactly the stored entries and every body is there. Issue 16 item 3.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { indexTerms } from '../../src/audit/query.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { timeIndexDisagrees } from './tiles-check.js';

const KILLS = 15;
let work: string | undefined;

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

function runAndKill(path: string, afterMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(__dirname, 'index-crash-child.ts')],
      {
        env: { ...process.env, CRASH_DB: path },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) setTimeout(() => child.kill('SIGKILL'), afterMs);
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`child exited ${String(code)}: ${err}`));
    });
  });
}

describe('entry index after SIGKILL', () => {
  it(`agrees with the entries after ${KILLS} kills at random moments`, async () => {
    work = await mkdtemp(join(tmpdir(), 'grantor-index-crash-'));
    const path = join(work, 'db');
    for (let k = 0; k < KILLS; k += 1) {
      await runAndKill(path, Math.floor(Math.random() * 150));
      const db = await openDatabase(path);
      try {
        const store = new LevelAuditStore(db);
        const entries: AuditEntry[] = [];
        for await (const e of store.readEntries(0)) entries.push(e as AuditEntry);
        entries.forEach((e, i) => {
          expect(e.seq).toBe(i);
        });
        const expected = new Map<string, number[]>();
        for (const e of entries) {
          for (const t of indexTerms(e)) expected.set(t, [...(expected.get(t) ?? []), e.seq]);
          const body = await store.readBody(e.digest);
          expect(body !== undefined && createHash('sha256').update(body).digest('hex')).toBe(
            e.digest,
          );
        }
        // Every term the entries make is indexed with exactly their seqs, and no other.
        const terms = new Set<string>();
        const sub = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
        for await (const key of sub.keys({ gte: 'x!', lt: 'x!~' })) {
          terms.add(key.slice(2, key.lastIndexOf('!')));
        }
        expect([...terms].sort()).toEqual([...expected.keys()].sort());
        for (const [term, seqs] of expected) {
          const got: number[] = [];
          for await (const s of store.scanIndex(term, 0, 1_000_000)) got.push(s);
          expect(got, term).toEqual(seqs);
        }
        // The time index too (recomputed independently, tiles-check.ts).
        expect(await timeIndexDisagrees(db)).toBeUndefined();
      } finally {
        await db.close();
      }
    }
  }, 300_000);
});
