/**
 * The bench-only fill of issue 17's scale bench (bench/audit-scale.ts): grows a provisioned
 * log to 10^7 entries in minutes instead of the hours the real append path takes on this
 * machine. It writes the store's own format directly, in large LevelDB batches, with the
 * production code for every value: the entries from `buildEntry` (their JCS hash and chain),
 * the leaves and tiles from `TiledTree`, the batch records' roots and extend values from
 * `extendDigest`, and every key (entries, request bodies, index terms, time keys, tiles,
 * batch records, `ixfrom`) from `LevelAuditStore.batchOps`, what `appendBatch` writes. Each
 * batch record is anchored as a commit anchors it (NV_Extend of its root, NV_Increment,
 * through the PolicySigned write key), so the TPM holds what the start-up check expects.
 *
 * What differs from the real path, and why it does not matter to the figures measured: a
 * batch record covers `recordSize` entries (default 32,768) instead of at most 512, so 10^7
 * entries take 306 anchors; LevelDB batches are not synced one by one (the fill writes into
 * the page cache, the next process reads the same files); the events are not run through
 * `checkEvent` (they are the bench's own, `decisionEvent`). The scale bench appends the last
 * 1,024 entries through the real path in the appliance's batches, so the batch the start-up
 * check re-hashes is a usual one. Period 0 only (the bench never switches periods).
 *
 * Proved by test/audit/bench-fill.test.ts: a filled log passes the real start-up check and
 * `grantor audit verify --full`, serves an inclusion proof that the independent tlog client
 * verifies, and an entry byte changed after the fill is refused.
 */
import { performance } from 'node:perf_hooks';
import { GENESIS_EXTEND, extendDigest } from '../src/audit/anchor.port.js';
import { LevelAuditStore } from '../src/audit/audit-store.level.js';
import type { StoredBatch, StoredBody } from '../src/audit/audit-store.port.js';
import {
  GENESIS_PREV_HASH,
  buildEntry,
  isEntryShape,
  type AuditEntry,
} from '../src/audit/entry.js';
import { leafHash } from '../src/audit/merkle.js';
import { TiledTree } from '../src/audit/tiled-tree.js';
import { anchorOf, decisionEvent, withLog, withParts, type LogSpec } from './audit-rig.js';

/** Entries per batchOps call and LevelDB batch. */
const SLICE = 4096;

export interface DirectFillOptions {
  /** Entries per batch record (one LevelDB batch, one anchor). */
  readonly recordSize?: number;
  /** A Date.now() time: stop there (at a record's end) and leave the log smaller. */
  readonly until?: number;
  readonly progress?: (size: number) => void;
}

function isStoredBatch(v: unknown): v is StoredBatch {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.index === 'number' &&
    typeof r.size === 'number' &&
    typeof r.root === 'string' &&
    typeof r.extend === 'string'
  );
}

/**
 * Grows the log of `spec` from its size to `target` entries (`decisionEvent(seq)` at each
 * seq) by direct writes, each batch record anchored in the TPM. Runs the real start-up check
 * first (the log must be consistent with its anchor, and a store never opened gets its
 * index mark, so the next start does not re-index). Resolves the size reached and the rate
 * of this fill (entries a second).
 */
export async function directFill(
  spec: LogSpec,
  target: number,
  options: DirectFillOptions = {},
): Promise<{ size: number; rate: number }> {
  const recordSize = options.recordSize ?? 32_768;
  if (!Number.isSafeInteger(recordSize) || recordSize < 1) {
    throw new RangeError('recordSize: a positive integer');
  }
  await withLog(spec, () => Promise.resolve());
  return withParts(spec, async ({ tpm, writeKey, db }) => {
    const anchor = anchorOf(spec, tpm, writeKey);
    const store = new LevelAuditStore(db);
    const [last] = await store.lastBatches(1);
    if (last !== undefined && !isStoredBatch(last))
      throw new Error('the last batch record is malformed');
    let size = last?.size ?? 0;
    let batches = last === undefined ? 0 : last.index + 1;
    let extend: Buffer =
      last === undefined ? Buffer.from(GENESIS_EXTEND) : Buffer.from(last.extend, 'hex');
    let prev = GENESIS_PREV_HASH;
    if (size > 0) {
      for await (const value of store.readEntries(size - 1, 1)) {
        if (!isEntryShape(value)) throw new Error(`entry ${size - 1} is malformed`);
        prev = value.hash;
      }
    }
    const tree = await TiledTree.load(store, size);
    const first = size;
    const t0 = performance.now();
    // One record's store write and anchor run while the next record is computed.
    let pending: Promise<void> = Promise.resolve();
    while (size < target && Date.now() < (options.until ?? Infinity)) {
      const n = Math.min(recordSize, target - size);
      const time = new Date().toISOString();
      const entries: AuditEntry[] = [];
      const bodies: (StoredBody | undefined)[] = [];
      for (let i = 0; i < n; i++) {
        const event = decisionEvent(size + i);
        const entry = buildEntry(event, size + i, time, prev);
        tree.appendLeaf(leafHash(Buffer.from(entry.hash, 'hex')));
        prev = entry.hash;
        entries.push(entry);
        bodies.push(
          event.body === undefined ? undefined : { digest: event.digest, text: event.body },
        );
      }
      const root = tree.root();
      extend = extendDigest(extend, root);
      const record: StoredBatch = {
        index: batches,
        size: size + n,
        root: root.toString('hex'),
        extend: extend.toString('hex'),
      };
      const tiles = tree.writes();
      tree.settle();
      await pending;
      pending = (async () => {
        // In slices (batchOps spreads a slice's index keys into one call), each through a
        // fresh store: batchOps reads the latest indexed time from the store, which the
        // slice before has just moved. Every slice puts the record (batchOps does), the last
        // one the tiles.
        for (let at = 0; at < n; at += SLICE) {
          const slice = entries.slice(at, at + SLICE);
          const end = at + SLICE >= n;
          const { ops } = await new LevelAuditStore(db).batchOps({
            entries: slice,
            batch: record,
            bodies: bodies.slice(at, at + SLICE).filter((b) => b !== undefined),
            tiles: end ? tiles : [],
          });
          await db.batch(ops);
        }
        await anchor.extend(root);
        await anchor.increment();
      })();
      size += n;
      batches += 1;
      options.progress?.(size);
    }
    await pending;
    return { size, rate: (size - first) / ((performance.now() - t0) / 1000) };
  });
}
