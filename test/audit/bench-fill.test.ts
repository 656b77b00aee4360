/**
 * The scale bench's direct fill (bench/audit-fill.ts) writes what the real append path
 * writes: a log it filled (a swtpm anchor written through the PolicySigned write key in a
 * SoftHSM2 token, LevelDB) passes the appliance's start-up check and `grantor audit verify
 * --full`, answers queries from its indexes, and serves tiles from which the independent
 * tlog client (test/audit/tlog-client/) proves a random entry's inclusion in the signed
 * checkpoint. An entry byte changed after the fill is refused: by verify --full for an
 * older entry, by start-up for one of the last batch.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directFill } from '../../bench/audit-fill.js';
import {
  decisionEvent,
  fillLog,
  startAuditRig,
  withLog,
  type AuditRig,
} from '../../bench/audit-rig.js';
import { runAuditCli } from '../../src/audit/cli.js';
import { LevelPeriodStore } from '../../src/audit/period-store.level.js';
import { createServer } from '../../src/http/app.js';
import { auditTlogRoutes } from '../../src/http/routes/audit-tlog.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { mulberry32 } from '../rig/prng.js';
import { TlogClient, leafHashOf, verifyInclusion, type Fetcher } from './tlog-client/client.js';
import { canonicalJson } from './tlog-client/jcs.js';

const ORIGIN = 'grantor.test/bench-fill';
const SIZE = 5000;
const TAIL = 300;
let root: string;
let rig: AuditRig;
let fillRate = 0;

const entryKey = (seq: number): string => `e!${seq.toString().padStart(16, '0')}`;

async function withDb<T>(use: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase(rig.spec.dbPath);
  try {
    return await use(db);
  } finally {
    await db.close();
  }
}

/** `grantor audit verify --full` on the stopped log: exit code and output. */
function verifyFull(): Promise<{ code: number; out: string }> {
  return withDb(async (db) => {
    const out: string[] = [];
    const code = await runAuditCli(
      ['verify', '--full'],
      { openPeriods: () => Promise.resolve(new LevelPeriodStore(db)) },
      { out: (l) => out.push(l), err: (l) => out.push(l) },
    );
    return { code, out: out.join('\n') };
  });
}

/** Changes one byte of entry `seq` as stored (a hex digit of its request digest). */
function editEntry(seq: number): Promise<string> {
  return withDb(async (db) => {
    const audit = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const text = await audit.get(entryKey(seq));
    if (text === undefined) throw new Error(`no entry ${seq}`);
    const at = text.indexOf('"digest":"') + '"digest":"'.length;
    const edited = text.slice(0, at) + (text[at] === '0' ? '1' : '0') + text.slice(at + 1);
    await audit.put(entryKey(seq), edited);
    return text;
  });
}

function restoreEntry(seq: number, text: string): Promise<void> {
  return withDb(async (db) => {
    await db
      .sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      .put(entryKey(seq), text);
  });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grantor-bench-fill-'));
  rig = await startAuditRig(root, ORIGIN);
  // Records of 1,024 entries (the last one partial), then the tail through the real path.
  const filled = await fillLog(rig.spec, SIZE, {
    fillBatch: 512,
    tail: TAIL,
    bulk: (spec, target, options) => directFill(spec, target, { ...options, recordSize: 1024 }),
  });
  expect(filled.size).toBe(SIZE);
  fillRate = filled.rate;
});

afterAll(async () => {
  await rig.close();
  await rm(root, { recursive: true, force: true });
});

describe('the direct fill of the scale bench', () => {
  it('passes the start-up check, answers queries and serves tiles the tlog client verifies', async () => {
    expect(fillRate).toBeGreaterThan(0);
    await withLog(rig.spec, async (audit, _startedMs, db) => {
      expect(audit.treeSize()).toBe(SIZE);
      // The direct records are anchored batches: 4 full records of 1,024, one of 604, then
      // the tail's batches.
      const batches = await audit.batches(0, 5);
      expect(batches.map((b) => b.size)).toEqual([1024, 2048, 3072, 4096, SIZE - TAIL]);
      // The index terms were written with the entries: a query by subject finds entry 1234.
      const wanted = decisionEvent(1234);
      const found = await audit.query({ subject: wanted.subject }, 0, 10);
      expect(found.entries.map((e) => e.seq)).toEqual([1234]);

      const app = createServer();
      await app.register(auditTlogRoutes, { audit });
      await app.ready();
      try {
        const fetcher: Fetcher = async (path) => {
          const res = await app.inject({ url: `/v1/audit/tlog/0/${path}` });
          return { status: res.statusCode, body: res.rawPayload };
        };
        const { noteVerifierKey } = await audit.verifier();
        const client = new TlogClient(fetcher, noteVerifierKey, ORIGIN);
        const { checkpoint } = await client.checkpoint();
        expect(checkpoint.size).toBe(SIZE);
        await client.useCheckpoint(checkpoint);
        const random = mulberry32(5);
        for (let i = 0; i < 3; i++) {
          const seq = Math.floor(random() * (SIZE - TAIL));
          // The entry as stored, its hash recomputed by the client's own JCS.
          const text = await db
            .sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
            .get(entryKey(seq));
          const stored = JSON.parse(text ?? 'null') as Record<string, unknown>;
          const { hash, ...rest } = stored;
          expect(createHash('sha256').update(canonicalJson(rest)).digest('hex')).toBe(hash);
          const leaf = leafHashOf(Buffer.from(String(hash), 'hex'));
          expect(leaf.equals(await client.leafHash(seq))).toBe(true);
          const path = await client.inclusionProof(seq);
          expect(verifyInclusion(leaf, seq, SIZE, path, checkpoint.root)).toBe(true);
        }
      } finally {
        await app.close();
      }
    });
  });

  it('passes grantor audit verify --full', async () => {
    const { code, out } = await verifyFull();
    expect(out).toContain(`OK: ${SIZE} entries`);
    expect(code).toBe(0);
  });

  it('an older entry byte changed after the fill: verify --full refuses (store_entry_broken)', async () => {
    const text = await editEntry(777);
    try {
      const { code, out } = await verifyFull();
      expect(out).toContain('(store_entry_broken)');
      expect(code).toBe(1);
    } finally {
      await restoreEntry(777, text);
    }
    expect((await verifyFull()).code).toBe(0);
  });

  it('an entry byte of the last batch changed: start-up refuses (store_entry_broken)', async () => {
    const text = await editEntry(SIZE - 1);
    try {
      await expect(withLog(rig.spec, () => Promise.resolve())).rejects.toMatchObject({
        code: 'audit_rollback_detected',
        details: { reason: 'store_entry_broken' },
      });
    } finally {
      await restoreEntry(SIZE - 1, text);
    }
    await withLog(rig.spec, (audit) => {
      expect(audit.treeSize()).toBe(SIZE);
      return Promise.resolve();
    });
  });
});
