/**
 * Where the log lives: entries, one record per anchored batch, and the store's identity.
 * The store is untrusted (the disk can be copied, restored, edited): everything read back
 * is checked by the log core. Real adapter: audit-store.level.ts (LevelDB, synced writes).
 */

/** One batch: the tree size after it and that tree's root (hex). */
export interface BatchRecord {
  readonly index: number;
  readonly size: number;
  readonly root: string;
}

/** Written once, when the log is created on a freshly provisioned anchor. */
export interface StoreMeta {
  readonly version: 1;
  readonly origin: string;
  /** The NV counter at creation (decimal string); batch i is anchored at genesis + i + 1. */
  readonly genesisCounter: string;
}

/** A request body kept by the hex SHA-256 of its text. */
export interface StoredBody {
  readonly digest: string;
  readonly text: string;
}

export interface AuditStore {
  /** `undefined` for an empty store; anything else is returned as read, unchecked. */
  readMeta(): Promise<unknown>;
  writeMeta(meta: StoreMeta): Promise<void>;
  /** Entries (as JSON values, unchecked) with seq >= from, in seq order. */
  readEntries(from: number, limit?: number): AsyncIterable<unknown>;
  /** Batch records with index >= from, in order. */
  readBatches(from: number): AsyncIterable<unknown>;
  /**
   * The entries, their batch record, their index terms (query.ts `indexTerms`) and the
   * request bodies they name, in ONE synced write (all or nothing).
   */
  appendBatch(
    entries: readonly object[],
    batch: BatchRecord,
    bodies?: readonly StoredBody[],
  ): Promise<void>;
  /** Seqs indexed under `term`, ascending from `from`, at most `limit` (unchecked). */
  scanIndex(term: string, from: number, limit: number): AsyncIterable<number>;
  /** The first seq the index covers (0 for a store indexed from its start). */
  indexedFrom(): Promise<number>;
  /** A request body by its digest (unchecked: the caller hashes it), or undefined. */
  readBody(digest: string): Promise<string | undefined>;
  close(): Promise<void>;
}
