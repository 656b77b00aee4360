/**
 * Where the log periods are recorded (periods.ts): which period is current, each later
 * period's record, and each period's own audit store. Untrusted like the audit store:
 * everything read back is checked by periodic.ts. Real adapter: period-store.level.ts.
 */
import type { AuditStore, StoreMeta, StoredBatch } from './audit-store.port.js';
import type { AuditEntry } from './entry.js';
import type { PeriodRecord } from './periods.js';
import type { TileData } from './tiles.js';

export interface PeriodStore {
  /** The current period's number as stored (unchecked); undefined: never switched (period 0). */
  readCurrent(): Promise<unknown>;
  /** Period n's record as stored (unchecked); undefined when absent. */
  readRecord(period: number): Promise<unknown>;
  /** Period n's retirement record (retention.ts) as stored (unchecked); undefined when none. */
  readRetirement(period: number): Promise<unknown>;
  /** Writes period n's retirement record, synced (retention.ts). */
  writeRetirement(period: number, record: object): Promise<void>;
  /** The audit store of period n (the first period's is the log's original store). */
  store(period: number): AuditStore;
  /**
   * Start period `record.period` in ONE synced write: its record, `current` pointing at
   * it, its store's metadata, and its first batch (the link entry, the batch record, the
   * tiles). All or nothing: after any crash exactly one period is current and, if it is
   * the new one, its link entry is there.
   */
  startPeriod(
    record: PeriodRecord,
    meta: StoreMeta,
    entries: readonly AuditEntry[],
    batch: StoredBatch,
    tiles: readonly TileData[],
  ): Promise<void>;
}
