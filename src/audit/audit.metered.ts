/**
 * Audit metrics measured at the log's two ports, so the log core stays as it is: a batch
 * becomes durable when the store's appendBatch resolves and committed when the anchor's
 * NV_Increment that follows resolves (docs/audit.md: store, extend, increment, in that
 * order, one increment per batch). In between its entries are the anchor lag.
 *
 * - audit_batch_size: entries of each batch, observed when its increment succeeds;
 * - nv_writes_total{index}: successful NV_Extend (`extend`) and NV_Increment (`counter`);
 * - anchor_lag_entries / anchor_lag_seconds: stored batches not yet anchored (a TPM outage
 *   leaves them there until the log's reconciliation anchors them).
 *
 * A batch left un-anchored by a crash is anchored by the start-up reconciliation of the
 * next process, which did not see it stored: it is not counted (the lag starts at 0).
 */
import type { GrantorMetrics } from '../shared/metrics.js';
import type { AnchorState, AuditAnchor, NvCertification } from './anchor.port.js';
import type { AuditStore, StoreMeta, StoredBatch, StoredBody } from './audit-store.port.js';
import type { TileData } from './tiles.js';

export type AuditMetrics = Pick<GrantorMetrics, 'auditBatchSize' | 'nvWrites' | 'setAnchorLag'>;

/** Stored batches waiting for their increment, oldest first. */
class PendingBatches {
  readonly #pending: { entries: number; at: number }[] = [];

  readonly #metrics: AuditMetrics;
  readonly #now: () => number;

  constructor(metrics: AuditMetrics, now: () => number) {
    this.#metrics = metrics;
    this.#now = now;
  }

  stored(entries: number): void {
    this.#pending.push({ entries, at: this.#now() });
    this.#publish();
  }

  anchored(): void {
    const batch = this.#pending.shift();
    if (batch !== undefined) this.#metrics.auditBatchSize.observe(batch.entries);
    this.#publish();
  }

  #publish(): void {
    const entries = this.#pending.reduce((n, b) => n + b.entries, 0);
    this.#metrics.setAnchorLag(entries, this.#pending[0]?.at);
  }
}

class MeteredAuditStore implements AuditStore {
  readonly #store: AuditStore;
  readonly #pending: PendingBatches;

  constructor(store: AuditStore, pending: PendingBatches) {
    this.#store = store;
    this.#pending = pending;
  }

  readMeta(): Promise<unknown> {
    return this.#store.readMeta();
  }

  writeMeta(meta: StoreMeta): Promise<void> {
    return this.#store.writeMeta(meta);
  }

  readEntries(from: number, limit?: number): AsyncIterable<unknown> {
    return this.#store.readEntries(from, limit);
  }

  readBatches(from: number): AsyncIterable<unknown> {
    return this.#store.readBatches(from);
  }

  lastBatches(count: number): Promise<unknown[]> {
    return this.#store.lastBatches(count);
  }

  readTile(level: number, index: number): Promise<Buffer | undefined> {
    return this.#store.readTile(level, index);
  }

  deleteRetired(keepBelow: number, limit: number): Promise<number> {
    return this.#store.deleteRetired(keepBelow, limit);
  }

  writeDerived(
    tiles: readonly TileData[],
    batches: readonly StoredBatch[],
    meta?: StoreMeta,
  ): Promise<void> {
    return this.#store.writeDerived(tiles, batches, meta);
  }

  async appendBatch(
    entries: readonly object[],
    batch: StoredBatch,
    bodies: readonly StoredBody[],
    tiles: readonly TileData[],
  ): Promise<void> {
    await this.#store.appendBatch(entries, batch, bodies, tiles);
    this.#pending.stored(entries.length);
  }

  scanIndex(term: string, from: number, limit: number): AsyncIterable<number> {
    return this.#store.scanIndex(term, from, limit);
  }

  indexedFrom(): Promise<number> {
    return this.#store.indexedFrom();
  }

  firstTimeRise(time: string): Promise<number | undefined> {
    return this.#store.firstTimeRise(time);
  }

  timeStepBacks(since: string | undefined, until: string, limit: number): AsyncIterable<number> {
    return this.#store.timeStepBacks(since, until, limit);
  }

  buildIndexes(progress?: (entries: number) => void): Promise<number | undefined> {
    return this.#store.buildIndexes(progress);
  }

  readBody(digest: string): Promise<string | undefined> {
    return this.#store.readBody(digest);
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

class MeteredAuditAnchor implements AuditAnchor {
  readonly #anchor: AuditAnchor;
  readonly #metrics: AuditMetrics;
  readonly #pending: PendingBatches;

  constructor(anchor: AuditAnchor, metrics: AuditMetrics, pending: PendingBatches) {
    this.#anchor = anchor;
    this.#metrics = metrics;
    this.#pending = pending;
  }

  get genesis(): bigint | undefined {
    return this.#anchor.genesis;
  }

  get pinnedNames(): AuditAnchor['pinnedNames'] {
    return this.#anchor.pinnedNames;
  }

  checkPinned(): Promise<void> {
    return this.#anchor.checkPinned();
  }

  read(): Promise<AnchorState> {
    return this.#anchor.read();
  }

  readAfterWrite(): Promise<AnchorState> {
    return this.#anchor.readAfterWrite();
  }

  async extend(data: Buffer): Promise<void> {
    await this.#anchor.extend(data);
    this.#metrics.nvWrites.inc({ index: 'extend' });
  }

  async increment(): Promise<void> {
    await this.#anchor.increment();
    this.#metrics.nvWrites.inc({ index: 'counter' });
    this.#pending.anchored();
  }

  certify(qualifyingData: Buffer): Promise<NvCertification[]> {
    return this.#anchor.certify(qualifyingData);
  }

  akPublic(): Promise<Buffer | undefined> {
    return this.#anchor.akPublic();
  }
}

export interface MeteredAudit {
  /** The log's store, counting the batches it makes durable. */
  readonly store: (store: AuditStore) => AuditStore;
  /** The log's anchor, counting NV writes and the batches it commits. */
  readonly anchor: (anchor: AuditAnchor) => AuditAnchor;
}

/** Decorators for ONE audit log's store and anchor (they share its pending batches). */
export function meterAudit(metrics: AuditMetrics, now: () => number = Date.now): MeteredAudit {
  const pending = new PendingBatches(metrics, now);
  return {
    store: (store) => new MeteredAuditStore(store, pending),
    anchor: (anchor) => new MeteredAuditAnchor(anchor, metrics, pending),
  };
}
