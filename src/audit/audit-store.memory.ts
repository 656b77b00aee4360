/**
 * An in-memory audit store for unit tests: same contract as the LevelDB adapter (one
 * atomic write per batch), plus `clone()` (copy the store aside) and scripted write
 * faults. Values are kept as JSON text, as on disk, so tests can edit them.
 */
import type { AuditStore, BatchRecord, StoreMeta } from './audit-store.port.js';

export class MemoryAuditStore implements AuditStore {
  meta: string | undefined;
  readonly entries = new Map<number, string>();
  readonly batches = new Map<number, string>();
  /** Errors thrown by the next writes; `durable` ones are written before throwing. */
  readonly writeFaults: { error: Error; durable: boolean }[] = [];
  readFault: Error | undefined;

  clone(): MemoryAuditStore {
    const c = new MemoryAuditStore();
    c.meta = this.meta;
    for (const [k, v] of this.entries) c.entries.set(k, v);
    for (const [k, v] of this.batches) c.batches.set(k, v);
    return c;
  }

  readMeta(): Promise<unknown> {
    if (this.readFault !== undefined) return Promise.reject(this.readFault);
    return Promise.resolve(
      this.meta === undefined ? undefined : (JSON.parse(this.meta) as unknown),
    );
  }

  writeMeta(meta: StoreMeta): Promise<void> {
    this.meta = JSON.stringify(meta);
    return Promise.resolve();
  }

  async *readEntries(from: number, limit = Number.MAX_SAFE_INTEGER): AsyncIterable<unknown> {
    await Promise.resolve();
    if (this.readFault !== undefined) throw this.readFault;
    const keys = [...this.entries.keys()].filter((k) => k >= from).sort((a, b) => a - b);
    for (const k of keys.slice(0, limit))
      yield JSON.parse(this.entries.get(k) ?? 'null') as unknown;
  }

  async *readBatches(from: number): AsyncIterable<unknown> {
    await Promise.resolve();
    if (this.readFault !== undefined) throw this.readFault;
    const keys = [...this.batches.keys()].filter((k) => k >= from).sort((a, b) => a - b);
    for (const k of keys) yield JSON.parse(this.batches.get(k) ?? 'null') as unknown;
  }

  async appendBatch(entries: readonly object[], batch: BatchRecord): Promise<void> {
    await Promise.resolve();
    const fault = this.writeFaults.shift();
    if (fault !== undefined && !fault.durable) throw fault.error;
    for (const e of entries) this.entries.set((e as { seq: number }).seq, JSON.stringify(e));
    this.batches.set(batch.index, JSON.stringify(batch));
    if (fault !== undefined) throw fault.error;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
