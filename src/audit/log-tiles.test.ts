/**
 * The tiled log (issue 17): tiles written with their batch, a start-up bounded by the last
 * batch, what it still refuses and what only the full replay (or a read) notices, and the
 * one-time upgrade of a store written before tiles.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../shared/clock.js';
import type { DomainLogger } from '../shared/log.js';
import { MemoryAnchor } from './anchor.memory.js';
import { MemoryAuditStore } from './audit-store.memory.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import { entryHash } from './entry.js';
import { AuditLog, type AuditLogOptions } from './log.js';
import { MerkleTree, leafHash } from './merkle.js';
import { ReplayProblem, replayLog } from './replay.js';

const options: AuditLogOptions = {
  origin: 'grantor.test/tiles',
  maxBatchSize: 50,
  minAnchorIntervalMs: 0,
  anchorRetryDeadlineMs: 0,
};

const clock: Clock = {
  now: () => Date.parse('2026-01-01T00:00:00Z'),
  sleep: () => Promise.resolve(),
};

const event = (i: number): AuditEvent => ({
  type: 'grant.decision',
  subject: `rt_${i}`,
  decision: 'allow',
  digest: createHash('sha256').update(`req-${i}`).digest('hex'),
});

/** Counts the entries start-up reads. */
class CountingStore extends MemoryAuditStore {
  entriesRead = 0;
  override async *readEntries(from: number, limit?: number): AsyncIterable<unknown> {
    for await (const e of super.readEntries(from, limit)) {
      this.entriesRead += 1;
      yield e;
    }
  }
}

function captureLogger(): DomainLogger & { events: Record<string, unknown>[] } {
  const events: Record<string, unknown>[] = [];
  const push = (obj: object): void => {
    events.push(obj as Record<string, unknown>);
  };
  return { events, info: push, warn: push, error: push };
}

/** A log of `n` entries in batches of 50 (appends 50 at a time), its store and anchor. */
async function filled(
  n: number,
  shift = 0,
): Promise<{ store: CountingStore; anchor: MemoryAnchor }> {
  const store = new CountingStore();
  const anchor = new MemoryAnchor();
  const log = new AuditLog(store, anchor, options, clock);
  await log.provision();
  await log.open();
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, (_, k) => log.append(event(i + k + shift))),
    );
  }
  await log.close();
  return { store, anchor };
}

const reopen = (store: MemoryAuditStore, anchor: MemoryAnchor, logger?: DomainLogger) =>
  new AuditLog(store, anchor, options, clock, logger);

const refused = (reason: string, extra: Record<string, unknown> = {}): object => ({
  code: 'audit_rollback_detected',
  details: { reason, ...extra },
});

function reference(store: MemoryAuditStore): MerkleTree {
  const tree = new MerkleTree();
  const seqs = [...store.entries.keys()].sort((a, b) => a - b);
  for (const seq of seqs) {
    const e = JSON.parse(store.entries.get(seq) ?? '') as { hash: string };
    tree.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
  }
  return tree;
}

describe('AuditLog on tiles', () => {
  it('starts by reading the last batch only, and serves the proofs of the full tree', async () => {
    const { store, anchor } = await filled(1200);
    // Every tile a commit wrote is there: level 0 tiles 0-3 and 4 (partial), level 1 tile 0.
    expect([...store.tiles.keys()].sort()).toEqual(['0/0', '0/1', '0/2', '0/3', '0/4', '1/0']);
    store.entriesRead = 0;
    const log = reopen(store, anchor);
    await log.open();
    // The last batch (50 entries) and the entry it links to: not the 1,200.
    expect(store.entriesRead).toBe(51);
    const ref = reference(store);
    expect(log.head().root.equals(ref.root())).toBe(true);
    for (const [seq, size] of [
      [0, 1200],
      [700, 1000],
      [1199, 1200],
      [255, 256],
    ] as const) {
      const p = await log.inclusionProof(seq, size);
      expect(p.path.map((h) => h.toString('hex'))).toEqual(
        ref.inclusionProof(seq, size).map((h) => h.toString('hex')),
      );
    }
    expect((await log.consistencyProof(300, 1150)).map((h) => h.toString('hex'))).toEqual(
      ref.consistencyProof(300, 1150).map((h) => h.toString('hex')),
    );
    expect((await log.root(777)).equals(ref.root(777))).toBe(true);
    // The tiles a restarted log writes continue the same tree.
    await log.append(event(1200));
    ref.appendLeaf(
      leafHash(
        Buffer.from((JSON.parse(store.entries.get(1200) ?? '') as { hash: string }).hash, 'hex'),
      ),
    );
    expect(log.head().root.equals(ref.root())).toBe(true);
    await expect(replayLog(store, { derived: () => Promise.resolve() })).resolves.toMatchObject({
      size: 1201,
    });
  });

  it('refuses a right-edge tile that does not match (store_tiles_mismatch)', async () => {
    const { store, anchor } = await filled(600);
    const edge = Buffer.from(store.tiles.get('0/2') ?? '', 'base64');
    edge[0] = (edge[0] ?? 0) ^ 1;
    store.tiles.set('0/2', edge.toString('base64'));
    await expect(reopen(store, anchor).open()).rejects.toMatchObject(
      refused('store_tiles_mismatch'),
    );
  });

  it('refuses a tail batch whose tiles are missing (store_tiles_mismatch)', async () => {
    const { store, anchor } = await filled(600);
    // The last batch wrote the edge tiles 0/2 and 1/0.
    store.tiles.delete('1/0');
    await expect(reopen(store, anchor).open()).rejects.toMatchObject(
      refused('store_tiles_mismatch', { tile: '1/0', problem: 'missing' }),
    );
  });

  it('refuses a batch record whose extend value was edited (store_batch_malformed)', async () => {
    const { store, anchor } = await filled(600);
    // 13 batches: the first append commits alone, then 50 at a time.
    for (const i of [12, 11]) {
      const copy = store.clone();
      const record = JSON.parse(copy.batches.get(i) ?? '') as Record<string, unknown>;
      copy.batches.set(i, JSON.stringify({ ...record, extend: 'ab'.repeat(32) }));
      await expect(reopen(copy, anchor).open()).rejects.toMatchObject(
        refused('store_batch_malformed', { batch: i }),
      );
    }
  });

  it('a rewritten old entry passes start-up but is never served; the full replay names it', async () => {
    const { store, anchor } = await filled(600);
    const e = JSON.parse(store.entries.get(100) ?? '') as AuditEntry;
    const forged = { ...e, subject: 'rt_forged' };
    store.entries.set(100, JSON.stringify({ ...forged, hash: entryHash(forged) }));
    const log = reopen(store, anchor);
    await log.open();
    await expect(log.entries(100, 1)).rejects.toMatchObject({ code: 'audit_unavailable' });
    await expect(log.entries(99, 1)).resolves.toHaveLength(1);
    const problem = await replayLog(store, { derived: () => Promise.resolve() }).catch(
      (err: unknown) => err,
    );
    expect(problem).toBeInstanceOf(ReplayProblem);
    expect(problem).toMatchObject({ details: { reason: 'store_entry_broken', seq: 101 } });
  });

  it('a rewritten old tile passes start-up but is never used for a proof', async () => {
    const { store, anchor } = await filled(600);
    const tile = Buffer.from(store.tiles.get('0/0') ?? '', 'base64');
    tile[40] = (tile[40] ?? 0) ^ 1;
    store.tiles.set('0/0', tile.toString('base64'));
    const logger = captureLogger();
    const log = reopen(store, anchor, logger);
    await log.open();
    await expect(log.inclusionProof(3, 600)).rejects.toMatchObject({ code: 'audit_unavailable' });
    expect(logger.events).toContainEqual(
      expect.objectContaining({ event: 'audit_tile_mismatch', problem: 'root_mismatch' }),
    );
    // A proof that needs no hash of that tile is still served.
    await expect(log.inclusionProof(590, 600)).resolves.toBeDefined();
  });
});

describe('AuditLog: stores written before tiles (version 1)', () => {
  /** What an older version wrote: no tiles, batch records without `extend`, version 1. */
  function downgrade(store: MemoryAuditStore): Map<string, string> {
    const tiles = new Map(store.tiles);
    store.tiles.clear();
    for (const [i, text] of store.batches) {
      const { extend: _, ...old } = JSON.parse(text) as Record<string, unknown>;
      store.batches.set(i, JSON.stringify(old));
    }
    const meta = JSON.parse(store.meta ?? '') as Record<string, unknown>;
    store.meta = JSON.stringify({ ...meta, version: 1 });
    return tiles;
  }

  it('builds the tiles once at first start, logs it, and serves', async () => {
    const { store, anchor } = await filled(600);
    const batches = new Map(store.batches);
    const tiles = downgrade(store);
    const logger = captureLogger();
    const log = reopen(store, anchor, logger);
    await log.open();
    expect(store.tiles).toEqual(tiles);
    expect(store.batches).toEqual(batches);
    expect(JSON.parse(store.meta ?? '')).toMatchObject({ version: 2 });
    expect(logger.events).toContainEqual(
      expect.objectContaining({ event: 'audit_upgrade_done', entries: 600, batches: 13 }),
    );
    expect(log.head().size).toBe(600);
  });

  it('refuses to upgrade a store with a rewritten entry (store_entry_broken)', async () => {
    const { store, anchor } = await filled(600);
    downgrade(store);
    const e = JSON.parse(store.entries.get(100) ?? '') as Record<string, unknown>;
    store.entries.set(100, JSON.stringify({ ...e, subject: 'rt_forged' }));
    await expect(reopen(store, anchor).open()).rejects.toMatchObject(
      refused('store_entry_broken', { seq: 100, problem: 'hash' }),
    );
    expect(JSON.parse(store.meta ?? '')).toMatchObject({ version: 1 });
  });

  it('refuses an upgraded store whose history the TPM did not anchor (store_anchor_mismatch)', async () => {
    const { store, anchor } = await filled(600);
    downgrade(store);
    // A consistent rewrite of the whole history (every root recomputed): only the TPM knows.
    const other = await filled(600, 1);
    downgrade(other.store);
    await expect(reopen(other.store, anchor).open()).rejects.toMatchObject(
      refused('store_anchor_mismatch'),
    );
  });
});
