import type { TileData } from './tiles.js';

/**
 * Where the log lives: entries, one record per anchored batch, the tree's tiles (C2SP
 * tlog-tiles, tiles.ts) and the store's identity.
 * The store is untrusted (the disk can be copied, restored, edited): everything read back
 * is checked by the log core. Real adapter: audit-store.level.ts (LevelDB, synced writes).
 */

/** One batch: the tree size after it and that tree's root (hex). */
export interface BatchRecord {
  readonly index: number;
  readonly size: number;
  readonly root: string;
}

/** A record read back from the (untrusted) store has the shape of a BatchRecord. */
export function isBatchRecord(v: unknown): v is BatchRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.index === 'number' &&
    typeof r.size === 'number' &&
    Number.isSafeInteger(r.size) &&
    typeof r.root === 'string' &&
    /^[0-9a-f]{64}$/.test(r.root)
  );
}

/**
 * A batch record as stored (version 2 stores): also the TPM extend value after the batch
 * (hex), E_i = SHA-256(E_{i-1} ‖ root_i), so that start-up can check the last batches
 * against the TPM without recomputing the chain from the first.
 */
export interface StoredBatch extends BatchRecord {
  readonly extend: string;
}

/**
 * Written once, when the log is created on a freshly provisioned anchor. Version 1 stores
 * (written before tiles) have no tiles and no `extend` in their batch records; start-up
 * builds both once (log.ts `upgrade`) and then writes version 2.
 */
export interface StoreMeta {
  readonly version: 1 | 2;
  readonly origin: string;
  /** The NV counter at creation (decimal string); batch i is anchored at genesis + i + 1. */
  readonly genesisCounter: string;
}

/** A request body kept by the hex SHA-256 of its text. */
export interface StoredBody {
  readonly digest: string;
  readonly text: string;
}

/** One batch as the log makes it durable: its entries, record, request bodies and tiles. */
export interface BatchWrite {
  readonly entries: readonly object[];
  readonly batch: StoredBatch;
  readonly bodies: readonly StoredBody[];
  readonly tiles: readonly TileData[];
}

export interface AuditStore {
  /** `undefined` for an empty store; anything else is returned as read, unchecked. */
  readMeta(): Promise<unknown>;
  writeMeta(meta: StoreMeta): Promise<void>;
  /** Entries (as JSON values, unchecked) with seq >= from, in seq order. */
  readEntries(from: number, limit?: number): AsyncIterable<unknown>;
  /** Batch records with index >= from, in order. */
  readBatches(from: number): AsyncIterable<unknown>;
  /** The last `count` batch records (fewer when the store has fewer), in order. */
  lastBatches(count: number): Promise<unknown[]>;
  /** A tile's hashes as stored (its widest version), unchecked; undefined when absent. */
  readTile(level: number, index: number): Promise<Buffer | undefined>;
  /**
   * The entries, their batch record, their index terms (query.ts `indexTerms`) and time
   * keys (query.ts `timeKeys`), the
   * request bodies they name and the tiles they change, in ONE synced write (all or
   * nothing): tiles never disagree with the entries, whatever the crash.
   */
  appendBatch(write: BatchWrite): Promise<void>;
  /**
   * What a version 1 store lacks (tiles, batch records with `extend`), in one synced write;
   * with `meta` last, the upgrade's end (log.ts `upgrade`).
   */
  writeDerived(
    tiles: readonly TileData[],
    batches: readonly StoredBatch[],
    meta?: StoreMeta,
  ): Promise<void>;
  /** Seqs indexed under `term`, ascending from `from`, at most `limit` (unchecked). */
  scanIndex(term: string, from: number, limit: number): AsyncIterable<number>;
  /** The first seq the index covers (0 for a store indexed from its start). */
  indexedFrom(): Promise<number>;
  /** The seq of the first `rise` time key at or after `time` (query.ts `timeKeys`), if any. */
  firstTimeRise(time: string): Promise<number | undefined>;
  /** Seqs of the `back` time keys with times in [since, until), at most `limit` (unchecked). */
  timeStepBacks(since: string | undefined, until: string, limit: number): AsyncIterable<number>;
  /**
   * A store whose entries were written before the time index (or before the term index):
   * index every entry once, in synced chunks, the mark that it is done last (a crash on the
   * way indexes again: the keys are the same). Resolves the entries indexed, or `undefined`
   * when the store was indexed already (log.ts start-up).
   */
  buildIndexes(progress?: (entries: number) => void): Promise<number | undefined>;
  /** A request body by its digest (unchecked: the caller hashes it), or undefined. */
  readBody(digest: string): Promise<string | undefined>;
  /**
   * Retention (retention.ts): ONE synced write deleting at most `limit` of what a retired
   * period no longer keeps: its entries from seq `keepBelow` on, every request body, every
   * index term and time key. Never its meta, batch records or tiles (the proofs). Resolves
   * how many keys it deleted; 0 when nothing is left. A crash between two calls leaves a
   * store the next call finishes.
   */
  deleteRetired(keepBelow: number, limit: number): Promise<number>;
  close(): Promise<void>;
}
