/**
 * The whole log recomputed from its entries with bounded memory: entries and batch records
 * are streamed in step, every link and hash checked, the tree rebuilt with a frontier
 * (tiled-tree.ts), every batch root and the extend chain from the provisioned value
 * recomputed. What it derives (tiles, batch records with `extend`) goes to a sink in
 * chunks: the upgrade of a version 1 store writes it (log.ts), `grantor audit verify
 * --full` compares it with what the store holds (full-check.ts).
 */
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { isBatchRecord, type AuditStore, type StoredBatch } from './audit-store.port.js';
import type { AuditEntry } from './entry.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape } from './entry.js';
import { HASH_SIZE, leafHash } from './merkle.js';
import { TiledTree } from './tiled-tree.js';
import { TILE_WIDTH, type TileData } from './tiles.js';

/** Why a replay stopped: the start-up reason codes of docs/audit.md. */
export class ReplayProblem extends Error {
  constructor(
    message: string,
    readonly details: Readonly<Record<string, unknown>> & { readonly reason: string },
  ) {
    super(message);
    this.name = 'ReplayProblem';
  }
}

export interface ReplaySink {
  /**
   * Tiles and records derived since the last call (at most 64 records), and the records as
   * the store holds them (unchecked: `extend` may be absent, version 1, or differ).
   */
  derived(
    tiles: readonly TileData[],
    batches: readonly StoredBatch[],
    stored: readonly unknown[],
  ): Promise<void>;
  /** Entries replayed so far (for a progress line or bar). */
  progress?(entries: number): void;
}

export interface Replayed {
  readonly size: number;
  readonly batches: number;
  readonly root: Buffer;
  readonly extend: Buffer;
  readonly headHash: string;
}

const CHUNK = 64;

/**
 * `baseExtend`: the extend value before the store's first batch: the provisioned one for
 * the first log period, the previous period's final one for a later period (periods.ts).
 */
export async function replayLog(
  store: AuditStore,
  sink: ReplaySink,
  baseExtend: Buffer = GENESIS_EXTEND,
): Promise<Replayed> {
  // Never read back: every tile the replay needs is on its own right edge.
  const tree = new TiledTree({ readTile: () => Promise.resolve(undefined) });
  const entries = store.readEntries(0)[Symbol.asyncIterator]();
  let prev = GENESIS_PREV_HASH;
  const leaves: LeafSource = {
    async next(seq) {
      const next = await entries.next();
      if (next.done === true) return undefined;
      const problem = isEntryShape(next.value) ? checkLink(next.value, seq, prev) : 'shape';
      if (problem !== undefined) {
        throw new ReplayProblem(`audit store entry ${seq} is broken (${problem})`, {
          reason: 'store_entry_broken',
          seq,
          problem,
        });
      }
      prev = (next.value as AuditEntry).hash;
      return leafHash(Buffer.from(prev, 'hex'));
    },
    async exhausted() {
      return (await entries.next()).done === true;
    },
  };
  try {
    const r = await replay(store, sink, tree, leaves, Buffer.from(baseExtend));
    return { ...r, headHash: prev };
  } finally {
    await entries.return?.();
  }
}

/**
 * A retired period (retention.ts: its entries moved into a verified bundle, its tiles and
 * batch records kept) replayed from its level-0 tiles instead of its entries: every batch
 * root, the extend chain and the upper tiles are recomputed from the leaf hashes as for a
 * live period; what cannot be checked without the entries (each entry against its own hash
 * and the previous one) was checked by the bundle's verifier before they were deleted.
 * `headHash` is empty: the entries that would name it are gone.
 */
export async function replayRetired(
  store: AuditStore,
  sink: ReplaySink,
  baseExtend: Buffer,
): Promise<Replayed> {
  const tree = new TiledTree({ readTile: () => Promise.resolve(undefined) });
  let tile: { index: number; hashes: Buffer | undefined } | undefined;
  const leafAt = async (seq: number): Promise<Buffer | undefined> => {
    const index = Math.floor(seq / TILE_WIDTH);
    if (tile?.index !== index) tile = { index, hashes: await store.readTile(0, index) };
    const at = (seq % TILE_WIDTH) * HASH_SIZE;
    const hashes = tile.hashes;
    if (hashes === undefined || hashes.length < at + HASH_SIZE) return undefined;
    return Buffer.from(hashes.subarray(at, at + HASH_SIZE));
  };
  let size = 0;
  const leaves: LeafSource = {
    async next(seq) {
      size = seq + 1;
      return leafAt(seq);
    },
    async exhausted() {
      return (await leafAt(size)) === undefined;
    },
  };
  const r = await replay(store, sink, tree, leaves, Buffer.from(baseExtend));
  return { ...r, headHash: '' };
}

/** Where a replay takes its leaf hashes from: the entries, or a retired period's tiles. */
interface LeafSource {
  /** The leaf hash at `seq` (asked in order from 0), undefined past the last one. */
  next(seq: number): Promise<Buffer | undefined>;
  /** After the last batch: nothing more to take (else the store holds unbatched entries). */
  exhausted(): Promise<boolean>;
}

async function replay(
  store: AuditStore,
  sink: ReplaySink,
  tree: TiledTree,
  leaves: LeafSource,
  baseExtend: Buffer,
): Promise<Omit<Replayed, 'headHash'>> {
  let extend: Buffer = baseExtend;
  let batches = 0;
  let pending: StoredBatch[] = [];
  let stored: unknown[] = [];
  const flush = async (): Promise<void> => {
    await sink.derived(tree.writes(), pending, stored);
    tree.settle();
    pending = [];
    stored = [];
    sink.progress?.(tree.size);
  };
  for await (const value of store.readBatches(0)) {
    if (!isBatchRecord(value) || value.index !== batches || value.size <= tree.size) {
      throw new ReplayProblem(`audit store batch record ${batches} is malformed`, {
        reason: 'store_batch_malformed',
        batch: batches,
      });
    }
    while (tree.size < value.size) {
      const leaf = await leaves.next(tree.size);
      if (leaf === undefined) {
        throw new ReplayProblem(
          `audit store batch ${batches} ends at size ${value.size} but the store holds only ${tree.size} entries`,
          { reason: 'store_truncated', batch: batches, batchSize: value.size, entries: tree.size },
        );
      }
      tree.appendLeaf(leaf);
    }
    const root: Buffer = tree.root();
    if (root.toString('hex') !== value.root) {
      throw new ReplayProblem(`audit store batch ${batches} does not match its entries`, {
        reason: 'store_batch_root_mismatch',
        batch: batches,
      });
    }
    extend = extendDigest(extend, root);
    pending.push({
      index: batches,
      size: value.size,
      root: value.root,
      extend: extend.toString('hex'),
    });
    stored.push(value);
    batches += 1;
    if (pending.length >= CHUNK) await flush();
  }
  if (!(await leaves.exhausted())) {
    throw new ReplayProblem(
      `audit store holds entries after its last batch record (size ${tree.size})`,
      { reason: 'store_unbatched_entries', size: tree.size },
    );
  }
  await flush();
  return { size: tree.size, batches, root: tree.root(), extend };
}
