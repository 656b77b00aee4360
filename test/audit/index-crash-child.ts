/**
 * The process index-crash.test.ts kills: appends batches of entries with their index terms
 * and request bodies to a LevelDB audit store (the adapter's synced batch), forever.
 * Prints `ready` once it has opened the store. CRASH_DB names the folder.
 */
import { createHash } from 'node:crypto';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import { GENESIS_PREV_HASH, buildEntry, type AuditEntry } from '../../src/audit/entry.js';
import { openDatabase } from '../../src/shared/db.level.js';

async function main(): Promise<void> {
  const path = process.env.CRASH_DB;
  if (path === undefined) throw new Error('CRASH_DB is not set');
  const db = await openDatabase(path);
  const store = new LevelAuditStore(db);
  let seq = 0;
  let prev = GENESIS_PREV_HASH;
  let batchIndex = 0;
  for await (const e of store.readEntries(0)) {
    const entry = e as AuditEntry;
    seq = entry.seq + 1;
    prev = entry.hash;
  }
  for await (const _ of store.readBatches(0)) batchIndex += 1;
  process.stdout.write('ready\n');
  for (;;) {
    const size = 1 + Math.floor(Math.random() * 32);
    const entries: AuditEntry[] = [];
    const bodies: { digest: string; text: string }[] = [];
    for (let i = 0; i < size; i += 1) {
      const text = JSON.stringify({ n: seq, r: Math.random() });
      const digest = createHash('sha256').update(text).digest('hex');
      const e = buildEntry(
        {
          type: seq % 2 === 0 ? 'grant.refused' : 'grant.redeem',
          subject: `rt_${seq % 7}`,
          decision: seq % 3 === 0 ? 'deny' : 'allow',
          digest,
        },
        seq,
        new Date().toISOString(),
        prev,
      );
      entries.push(e);
      bodies.push({ digest, text });
      prev = e.hash;
      seq += 1;
    }
    await store.appendBatch({
      entries,
      batch: { index: batchIndex, size: seq, root: '0'.repeat(64), extend: '0'.repeat(64) },
      bodies,
      tiles: [],
    });
    batchIndex += 1;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`);
  process.exit(1);
});
