/**
 * An in-memory audit store for unit tests: same contract as the LevelDB adapter (one
 * atomic write per batch), plus `clone()` (copy the store aside) and scripted write
 * faults. Values are kept as JSON text, as on disk, so tests can edit them.
 */
import type { AuditStore, BatchWrite, StoreMeta, StoredBatch } from './audit-store.port.js';
import type { AuditEntry } from './entry.js';
import { indexTerms, timeKeys, type TimeKey } from './query.js';
import type { TileData } from './tiles.js';

export class MemoryAuditStore implements AuditStore {
  meta: string | undefined;
  readonly entries = new Map<number, string>();
  readonly batches = new Map<number, string>();
  /** Index term -> seqs (written with the entries, like the LevelDB adapter). */
  readonly index = new Map<string, number[]>();
  readonly bodies = new Map<string, string>();
  /** The time index's keys (query.ts `timeKeys`), written with the entries. */
  timeIndex: TimeKey[] = [];
  /** `<level>/<index>` -> base64 of the tile's hashes (as on disk). */
  readonly tiles = new Map<string, string>();
  /** Errors thrown by the next writes; `durable` ones are written before throwing. */
  readonly writeFaults: { error: Error; durable: boolean }[] = [];
  readFault: Error | undefined;

  clone(): MemoryAuditStore {
    const c = new MemoryAuditStore();
    c.meta = this.meta;
    for (const [k, v] of this.entries) c.entries.set(k, v);
    for (const [k, v] of this.batches) c.batches.set(k, v);
    for (const [k, v] of this.index) c.index.set(k, [...v]);
    for (const [k, v] of this.bodies) c.bodies.set(k, v);
    for (const [k, v] of this.tiles) c.tiles.set(k, v);
    c.timeIndex = [...this.timeIndex];
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

  lastBatches(count: number): Promise<unknown[]> {
    if (this.readFault !== undefined) return Promise.reject(this.readFault);
    const keys = [...this.batches.keys()].sort((a, b) => a - b).slice(-count);
    return Promise.resolve(keys.map((k) => JSON.parse(this.batches.get(k) ?? 'null') as unknown));
  }

  readTile(level: number, index: number): Promise<Buffer | undefined> {
    if (this.readFault !== undefined) return Promise.reject(this.readFault);
    const text = this.tiles.get(`${level}/${index}`);
    return Promise.resolve(text === undefined ? undefined : Buffer.from(text, 'base64'));
  }

  async writeDerived(
    tiles: readonly TileData[],
    batches: readonly StoredBatch[],
    meta?: StoreMeta,
  ): Promise<void> {
    await Promise.resolve();
    const fault = this.writeFaults.shift();
    if (fault !== undefined && !fault.durable) throw fault.error;
    for (const t of tiles) this.tiles.set(`${t.level}/${t.index}`, t.hashes.toString('base64'));
    for (const b of batches) this.batches.set(b.index, JSON.stringify(b));
    if (meta !== undefined) this.meta = JSON.stringify(meta);
    if (fault !== undefined) throw fault.error;
  }

  async appendBatch({ entries, batch, bodies, tiles }: BatchWrite): Promise<void> {
    await Promise.resolve();
    const fault = this.writeFaults.shift();
    if (fault !== undefined && !fault.durable) throw fault.error;
    for (const t of tiles) this.tiles.set(`${t.level}/${t.index}`, t.hashes.toString('base64'));
    for (const e of entries) {
      const seq = (e as { seq: number }).seq;
      this.entries.set(seq, JSON.stringify(e));
      for (const term of indexTerms(e as AuditEntry)) {
        const seqs = this.index.get(term) ?? [];
        if (!seqs.includes(seq)) seqs.push(seq);
        seqs.sort((a, b) => a - b);
        this.index.set(term, seqs);
      }
    }
    const rises = this.timeIndex.filter((k) => k.kind === 'rise');
    for (const key of timeKeys(entries as AuditEntry[], rises.at(-1)?.time).keys) {
      this.timeIndex.push(key);
    }
    for (const b of bodies) this.bodies.set(b.digest, b.text);
    this.batches.set(batch.index, JSON.stringify(batch));
    if (fault !== undefined) throw fault.error;
  }

  firstTimeRise(time: string): Promise<number | undefined> {
    const rise = this.timeIndex.find((k) => k.kind === 'rise' && k.time >= time);
    return Promise.resolve(rise?.seq);
  }

  async *timeStepBacks(
    since: string | undefined,
    until: string,
    limit: number,
  ): AsyncIterable<number> {
    await Promise.resolve();
    const backs = this.timeIndex
      .filter((k) => k.kind === 'back' && k.time >= (since ?? '') && k.time < until)
      .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.seq - b.seq));
    for (const k of backs.slice(0, limit)) yield k.seq;
  }

  /** Indexed at every append from the start: nothing to build. */
  buildIndexes(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  async *scanIndex(term: string, from: number, limit: number): AsyncIterable<number> {
    await Promise.resolve();
    const seqs = (this.index.get(term) ?? []).filter((s) => s >= from).slice(0, limit);
    for (const s of seqs) yield s;
  }

  indexedFrom(): Promise<number> {
    return Promise.resolve(0);
  }

  readBody(digest: string): Promise<string | undefined> {
    return Promise.resolve(this.bodies.get(digest));
  }

  deleteRetired(keepBelow: number, limit: number): Promise<number> {
    let n = 0;
    for (const k of [...this.entries.keys()].filter((k) => k >= keepBelow).slice(0, limit)) {
      this.entries.delete(k);
      n += 1;
    }
    for (const map of [this.bodies, this.index]) {
      for (const k of [...map.keys()].slice(0, limit - n)) {
        map.delete(k);
        n += 1;
      }
    }
    const times = Math.min(this.timeIndex.length, limit - n);
    this.timeIndex.splice(0, times);
    return Promise.resolve(n + times);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
