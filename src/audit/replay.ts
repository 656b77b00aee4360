/**
 * The whole log recomputed from its entries with bounded memory: entries and batch records
 * are streamed in step, every link and hash checked, the tree rebuilt with a frontier
 * (tiled-tree.ts), every batch root and the extend chain from the provisioned value
 * recomputed. What it derives (tiles, batch records with `extend`) goes to a sink in
 * chunks: the upgrade of a version 1 store writes it (log.ts), `grantor audit verify
 * --full` compares it with what the store holds (full-check.ts).
 */
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import type { AuditStore, StoredBatch } from './audit-store.port.js';
import type { AuditEntry } from './entry.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape } from './entry.js';
import { leafHash } from './merkle.js';
import { TiledTree } from './tiled-tree.js';
import type { TileData } from './tiles.js';

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

function isRecord(v: unknown): v is { index: number; size: number; root: string } {
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
  try {
    return await replay(store, sink, tree, entries, Buffer.from(baseExtend));
  } finally {
    await entries.return?.();
  }
}

async function replay(
  store: AuditStore,
  sink: ReplaySink,
  tree: TiledTree,
  entries: AsyncIterator<unknown>,
  baseExtend: Buffer,
): Promise<Replayed> {
  let prev = GENESIS_PREV_HASH;
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
    if (!isRecord(value) || value.index !== batches || value.size <= tree.size) {
      throw new ReplayProblem(`audit store batch record ${batches} is malformed`, {
        reason: 'store_batch_malformed',
        batch: batches,
      });
    }
    while (tree.size < value.size) {
      const next = await entries.next();
      if (next.done === true) {
        throw new ReplayProblem(
          `audit store batch ${batches} ends at size ${value.size} but the store holds only ${tree.size} entries`,
          { reason: 'store_truncated', batch: batches, batchSize: value.size, entries: tree.size },
        );
      }
      const seq = tree.size;
      const problem = isEntryShape(next.value) ? checkLink(next.value, seq, prev) : 'shape';
      if (problem !== undefined) {
        throw new ReplayProblem(`audit store entry ${seq} is broken (${problem})`, {
          reason: 'store_entry_broken',
          seq,
          problem,
        });
      }
      const entry = next.value as AuditEntry;
      tree.appendLeaf(leafHash(Buffer.from(entry.hash, 'hex')));
      prev = entry.hash;
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
  if ((await entries.next()).done !== true) {
    throw new ReplayProblem(
      `audit store holds entries after its last batch record (size ${tree.size})`,
      { reason: 'store_unbatched_entries', size: tree.size },
    );
  }
  await flush();
  return { size: tree.size, batches, root: tree.root(), extend, headHash: prev };
}
