/**
 * `grantor audit verify --full`: the check start-up no longer makes (docs/audit.md, "What
 * start-up checks"). Replays the local store from its first entry with bounded memory
 * (replay.ts) and compares what it recomputes with what the store holds: every tile (the
 * stored one must hold the recomputed hashes) and every batch record's extend value. With
 * the start-up check (the last batch's extend value against the TPM), that binds the whole
 * store to the anchor.
 */
import type { AuditStore } from './audit-store.port.js';
import { ReplayProblem, replayLog, type Replayed } from './replay.js';
import { TILE_WIDTH } from './tiles.js';
import { HASH_SIZE } from './merkle.js';

export interface FullCheckProgress {
  (entries: number, total: number): void;
}

export async function verifyStoreFull(
  store: AuditStore,
  progress?: FullCheckProgress,
): Promise<Replayed> {
  const last = (await store.lastBatches(1))[0] as { size?: unknown } | undefined;
  const total = typeof last?.size === 'number' ? last.size : 0;
  return replayLog(store, {
    derived: async (tiles, batches, stored) => {
      for (const t of tiles) {
        const held = await store.readTile(t.level, t.index);
        const full = t.hashes.length === TILE_WIDTH * HASH_SIZE;
        const ok =
          held !== undefined &&
          (full ? held.equals(t.hashes) : held.subarray(0, t.hashes.length).equals(t.hashes));
        if (!ok) {
          throw new ReplayProblem(
            `audit tile ${t.level}/${t.index} does not hold the hashes recomputed from the entries`,
            {
              reason: 'store_tiles_mismatch',
              tile: `${t.level}/${t.index}`,
              problem: held === undefined ? 'missing' : 'differs',
            },
          );
        }
      }
      batches.forEach((b, i) => {
        const held = stored[i] as { extend?: unknown } | undefined;
        if (held?.extend !== b.extend) {
          throw new ReplayProblem(
            `audit store batch record ${b.index} does not hold the extend value recomputed from the entries`,
            { reason: 'store_batch_malformed', batch: b.index },
          );
        }
      });
    },
    progress: (entries) => progress?.(entries, total),
  });
}
