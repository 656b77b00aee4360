/**
 * Losing writes (issue 13): a disk whose volatile cache loses writes it acknowledged as
 * synced, or a power loss that drops everything after some sync, leaves the store at an
 * earlier synced state while the TPM anchor kept every batch acknowledged since. The
 * appliance must refuse (`store_behind_anchor`), never serve the older log as current.
 *
 * A real simulator could not be run here: the kernel has no device-mapper (no dm_mod, so no
 * dm-log-writes), and although /dev/fuse works, no FUSE filesystem that drops unsynced data
 * (LazyFS) is packaged for Debian. So this tests the model: the LevelDB folder is copied at
 * the moment each synced batch write returns (before its anchor write; the log is the only
 * writer and waits, so the copy is exactly the synced state), and the store is later
 * reverted to each of those states in turn, on swtpm.
 */
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import type { AuditStore } from '../../src/audit/audit-store.port.js';
import { AuditLog } from '../../src/audit/log.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { LOG_OPTIONS, event, storeWith, useTpmFile } from './helpers.js';

const file = useTpmFile('grantor-audit-lost-writes-', {
  counterIndex: 0x015000c0,
  extendIndex: 0x015000c1,
});

/** The LevelDB store, copied to `synced-<n>` each time a synced write returns. */
function snapshotStore(db: Database, path: string): AuditStore & { snapshots: string[] } {
  const inner = new LevelAuditStore(db);
  const snapshots: string[] = [];
  const snapshot = async (): Promise<void> => {
    const to = join(file.work, `synced-${snapshots.length}`);
    await cp(path, to, { recursive: true });
    snapshots.push(to);
  };
  return {
    ...storeWith(inner, {
      writeMeta: async (meta) => {
        await inner.writeMeta(meta);
        await snapshot();
      },
      appendBatch: async (write) => {
        await inner.appendBatch(write);
        await snapshot();
      },
    }),
    snapshots,
  };
}

async function openAt(path: string): Promise<{ db: Database; log: AuditLog }> {
  const db = await openDatabase(path);
  const log = new AuditLog(
    new LevelAuditStore(db),
    new TpmAuditAnchor(file.tpm, file.config),
    LOG_OPTIONS,
  );
  return { db, log };
}

describe('the store reverted to an earlier synced state (lost writes)', () => {
  it('is refused as store_behind_anchor at every earlier sync point, and serves at the last', async () => {
    const live = join(file.work, 'live');
    const db = await openDatabase(live);
    const store = snapshotStore(db, live);
    const log = new AuditLog(store, new TpmAuditAnchor(file.tpm, file.config), LOG_OPTIONS);
    await log.provision();
    await log.open();
    const acked: string[] = [];
    for (let b = 0; b < 4; b++) {
      const batch = await Promise.all([0, 1, 2].map((i) => log.append(event(10 * b + i))));
      acked.push(...batch.map((a) => a.hash));
    }
    const batches = log.head().batches;
    await log.close();
    await db.close();
    // One snapshot when the log was created, one per batch.
    expect(batches).toBeGreaterThanOrEqual(4);
    expect(store.snapshots).toHaveLength(1 + batches);

    // Every earlier synced state: the TPM has anchored more than the store holds.
    for (const [n, snapshot] of store.snapshots.slice(0, -1).entries()) {
      await rm(live, { recursive: true, force: true });
      await cp(snapshot, live, { recursive: true });
      const reverted = await openAt(live);
      try {
        await expect(reverted.log.open(), `synced state ${n}`).rejects.toMatchObject({
          code: 'audit_rollback_detected',
          details: {
            reason: 'store_behind_anchor',
            storeBatches: n,
            tpmCounter: ((file.config.pinnedGenesis ?? 0n) + BigInt(batches)).toString(),
          },
        });
        // Nothing is served from the stale store: no appends, no head, no entries.
        await expect(reverted.log.append(event(99))).rejects.toMatchObject({
          code: 'audit_rollback_detected',
        });
        let headError: unknown;
        try {
          reverted.log.head();
        } catch (err) {
          headError = err;
        }
        expect(headError).toMatchObject({ code: 'audit_rollback_detected' });
        await expect(reverted.log.entries(0, 1)).rejects.toMatchObject({
          code: 'audit_rollback_detected',
        });
      } finally {
        await reverted.log.close();
        await reverted.db.close();
      }
    }

    // The last synced state is the anchored one: it serves, with every acknowledged entry.
    await rm(live, { recursive: true, force: true });
    await cp(store.snapshots.at(-1) ?? '', live, { recursive: true });
    const last = await openAt(live);
    try {
      await last.log.open();
      expect(last.log.head().batches).toBe(batches);
      const entries = await last.log.entries(0, 100);
      expect(entries.map((e) => e.hash)).toEqual(acked);
    } finally {
      await last.log.close();
      await last.db.close();
    }
  });
});
