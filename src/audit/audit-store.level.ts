/**
 * The audit store in LevelDB: `db.sublevel('audit')` of the appliance database, keys
 * `meta`, `e!<seq, 16 digits>` (entries as JSON), `b!<index, 16 digits>` (batch records),
 * `x!<term>!<seq, 16 digits>` (index terms, query.ts), `r!<digest>` (request bodies),
 * `t!<level, 2 digits>!<index, 16 digits>` (tiles: the base64 of their hashes, the widest
 * version of each), `m!<time>!<seq, 16 digits>` and `k!<time>!<seq, 16 digits>` (the time
 * index's rises and step-backs, query.ts `timeKeys`), `ixfrom` (the first seq indexed) and
 * `ixdone` (every entry indexed, terms and times: `buildIndexes` on a store written before).
 * A batch of entries, its record, its index terms and time keys, its bodies and its tiles go
 * in one `batch(..., { sync: true })`: neither the indexes nor the tiles ever disagree with
 * the log.
 */
import type { Database } from '../shared/db.level.js';
import type { AuditStore, BatchWrite, StoreMeta, StoredBatch } from './audit-store.port.js';
import type { AuditEntry } from './entry.js';
import { indexTerms, timeKeys, type TimeKey } from './query.js';
import type { TileData } from './tiles.js';

const pad = (n: number): string => n.toString().padStart(16, '0');
const ENTRY = 'e!';
const BATCH = 'b!';
const INDEX = 'x!';
const BODY = 'r!';
const TILE = 't!';
const META = 'meta';
const tileKey = (level: number, index: number): string =>
  `${TILE}${level.toString().padStart(2, '0')}!${pad(index)}`;
const tileOp = (t: TileData): { key: string; value: string } => ({
  key: tileKey(t.level, t.index),
  value: t.hashes.toString('base64'),
});
const INDEXED_FROM = 'ixfrom';
const RISE = 'm!';
const BACK = 'k!';
const INDEXED_ALL = 'ixdone';
const timeKey = (k: TimeKey): string => `${k.kind === 'rise' ? RISE : BACK}${k.time}!${pad(k.seq)}`;
/** The seq at the end of a time key. */
const seqOfKey = (key: string): number => Number(key.slice(key.lastIndexOf('!') + 1));
/** Build chunks: entries per synced write. */
const BUILD_CHUNK = 1000;

/** What indexing needs of an entry read back (unchecked: a corrupt one is left out). */
function isIndexable(v: unknown): v is AuditEntry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.seq === 'number' &&
    Number.isSafeInteger(e.seq) &&
    typeof e.time === 'string' &&
    typeof e.type === 'string' &&
    typeof e.subject === 'string'
  );
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Left to the log core to classify: a corrupt record is a store that does not match.
    return { corrupt: true };
  }
}

/** One put on a sublevel of the appliance database, for a synced batch on the root. */
export interface LevelOp {
  readonly type: 'put';
  readonly key: string;
  readonly value: string;
  readonly sublevel: Sublevel;
}

/** A string-keyed, string-valued sublevel (what every store here opens). */
export type Sublevel = ReturnType<typeof stringSublevel>;

export function stringSublevel(db: Database, name: string) {
  return db.sublevel(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelAuditStore implements AuditStore {
  readonly #sub;
  /** The first seq indexed, once known (written with the first indexed batch). */
  #indexStart: number | undefined;
  /** The latest entry time written (the last rise), once read; `null` while unknown. */
  #timeTop: string | undefined | null = null;

  readonly #db: Database;

  constructor(db: Database, name = 'audit') {
    this.#db = db;
    this.#sub = stringSublevel(db, name);
  }

  #op(op: { key: string; value: string }): LevelOp {
    return { type: 'put', key: op.key, value: op.value, sublevel: this.#sub };
  }

  /** One synced write on the root database (sublevel batches do not type `sync`). */
  async #write(ops: readonly ({ key: string; value: string } | LevelOp)[]): Promise<void> {
    await this.#db.batch(
      ops.map((op) => ('sublevel' in op ? op : this.#op(op))),
      { sync: true },
    );
  }

  async deleteRetired(keepBelow: number, limit: number): Promise<number> {
    const keys: string[] = [];
    const ranges = [
      { gte: ENTRY + pad(keepBelow), lt: ENTRY + '~' },
      { gte: BODY, lt: BODY + '~' },
      { gte: INDEX, lt: INDEX + '~' },
      { gte: RISE, lt: RISE + '~' },
      { gte: BACK, lt: BACK + '~' },
    ];
    for (const range of ranges) {
      if (keys.length >= limit) break;
      for await (const key of this.#sub.keys({ ...range, limit: limit - keys.length })) {
        keys.push(key);
      }
    }
    for (const key of [INDEXED_FROM, INDEXED_ALL]) {
      if (keys.length < limit && (await this.#sub.get(key)) !== undefined) keys.push(key);
    }
    if (keys.length === 0) return 0;
    await this.#db.batch(
      keys.map((key) => ({ type: 'del' as const, key, sublevel: this.#sub })),
      { sync: true },
    );
    this.#indexStart = undefined;
    this.#timeTop = null;
    return keys.length;
  }

  async readMeta(): Promise<unknown> {
    const text = await this.#sub.get(META);
    return text === undefined ? undefined : parse(text);
  }

  async writeMeta(meta: StoreMeta): Promise<void> {
    await this.#write([{ key: META, value: JSON.stringify(meta) }]);
  }

  async *readEntries(from: number, limit?: number): AsyncIterable<unknown> {
    const options = {
      gte: ENTRY + pad(from),
      lt: ENTRY + '~',
      ...(limit === undefined ? {} : { limit }),
    };
    for await (const value of this.#sub.values(options)) yield parse(value);
  }

  async *readBatches(from: number): AsyncIterable<unknown> {
    for await (const value of this.#sub.values({ gte: BATCH + pad(from), lt: BATCH + '~' })) {
      yield parse(value);
    }
  }

  async lastBatches(count: number): Promise<unknown[]> {
    const values = await this.#sub
      .values({ gte: BATCH, lt: BATCH + '~', reverse: true, limit: count })
      .all();
    return values.reverse().map(parse);
  }

  async readTile(level: number, index: number): Promise<Buffer | undefined> {
    const text = await this.#sub.get(tileKey(level, index));
    return text === undefined ? undefined : Buffer.from(text, 'base64');
  }

  async writeDerived(
    tiles: readonly TileData[],
    batches: readonly StoredBatch[],
    meta?: StoreMeta,
  ): Promise<void> {
    const ops = tiles.map(tileOp);
    for (const b of batches) ops.push({ key: BATCH + pad(b.index), value: JSON.stringify(b) });
    if (meta !== undefined) ops.push({ key: META, value: JSON.stringify(meta) });
    await this.#write(ops);
  }

  async appendBatch(write: BatchWrite): Promise<void> {
    const { ops, start, top } = await this.batchOps(write);
    try {
      await this.#write(ops);
    } catch (err) {
      // The write may still be durable: read the latest time back before the next batch.
      this.#timeTop = null;
      throw err;
    }
    // Known only once durable: a failed write leaves `ixfrom` to the next batch.
    this.#indexStart = start;
    this.#timeTop = top;
  }

  /**
   * What `appendBatch` writes, as operations on this store's sublevel, for a caller that
   * writes them with others in one synced batch (a log period's start, period-store.level.ts).
   */
  async batchOps(
    { entries, batch, bodies, tiles }: BatchWrite,
    meta?: StoreMeta,
  ): Promise<{ ops: LevelOp[]; start: number | undefined; top: string | undefined }> {
    const ops: { key: string; value: string }[] = [];
    // A store written before indexing existed is indexed from its next entry on.
    const first = (entries[0] as { seq?: number } | undefined)?.seq;
    let start = this.#indexStart;
    if (start === undefined && first !== undefined) {
      const known = await this.#sub.get(INDEXED_FROM);
      if (known === undefined) ops.push({ key: INDEXED_FROM, value: String(first) });
      start = known === undefined ? first : Number(known);
    }
    for (const e of entries) {
      ops.push({ key: ENTRY + pad((e as { seq: number }).seq), value: JSON.stringify(e) });
    }
    const time = this.#indexOps(entries as readonly AuditEntry[], await this.#latestTime());
    // One at a time: a spread push of a large batch's keys overflows the call stack.
    for (const op of time.ops) ops.push(op);
    for (const b of bodies) ops.push({ key: BODY + b.digest, value: b.text });
    for (const t of tiles) ops.push(tileOp(t));
    ops.push({ key: BATCH + pad(batch.index), value: JSON.stringify(batch) });
    if (meta !== undefined) ops.push({ key: META, value: JSON.stringify(meta) });
    return { ops: ops.map((op) => this.#op(op)), start, top: time.top };
  }

  /** The index terms and time keys of entries appended after a log whose latest time is `top`. */
  #indexOps(
    entries: readonly AuditEntry[],
    top: string | undefined,
  ): { ops: { key: string; value: string }[]; top: string | undefined } {
    const ops: { key: string; value: string }[] = [];
    for (const e of entries) {
      for (const term of indexTerms(e))
        ops.push({ key: `${INDEX}${term}!${pad(e.seq)}`, value: '' });
    }
    const time = timeKeys(entries, top);
    for (const k of time.keys) ops.push({ key: timeKey(k), value: '' });
    return { ops, top: time.top };
  }

  /** The time of the last rise key: the latest entry time indexed. */
  async #latestTime(): Promise<string | undefined> {
    if (this.#timeTop !== null) return this.#timeTop;
    const [last] = await this.#sub
      .keys({ gte: RISE, lt: `${RISE}~`, reverse: true, limit: 1 })
      .all();
    this.#timeTop = last === undefined ? undefined : last.slice(RISE.length, last.lastIndexOf('!'));
    return this.#timeTop;
  }

  async firstTimeRise(time: string): Promise<number | undefined> {
    const [first] = await this.#sub.keys({ gte: RISE + time, lt: `${RISE}~`, limit: 1 }).all();
    return first === undefined ? undefined : seqOfKey(first);
  }

  async *timeStepBacks(
    since: string | undefined,
    until: string,
    limit: number,
  ): AsyncIterable<number> {
    for await (const key of this.#sub.keys({
      gte: BACK + (since ?? ''),
      lt: BACK + until,
      limit,
    })) {
      const seq = seqOfKey(key);
      if (Number.isSafeInteger(seq)) yield seq;
    }
  }

  async buildIndexes(progress?: (entries: number) => void): Promise<number | undefined> {
    if ((await this.#sub.get(INDEXED_ALL)) !== undefined) return undefined;
    let top: string | undefined;
    let chunk: AuditEntry[] = [];
    let done = 0;
    const flush = async (): Promise<void> => {
      const { ops, top: next } = this.#indexOps(chunk, top);
      await this.#write(ops);
      top = next;
      done += chunk.length;
      chunk = [];
      progress?.(done);
    };
    for await (const value of this.readEntries(0)) {
      if (isIndexable(value)) chunk.push(value);
      if (chunk.length === BUILD_CHUNK) await flush();
    }
    if (chunk.length > 0) await flush();
    await this.#write([
      { key: INDEXED_FROM, value: '0' },
      { key: INDEXED_ALL, value: '1' },
    ]);
    this.#indexStart = 0;
    this.#timeTop = top;
    return done;
  }

  async *scanIndex(term: string, from: number, limit: number): AsyncIterable<number> {
    const prefix = `${INDEX}${term}!`;
    for await (const key of this.#sub.keys({ gte: prefix + pad(from), lt: `${prefix}~`, limit })) {
      const seq = Number(key.slice(prefix.length));
      if (!Number.isSafeInteger(seq)) return;
      yield seq;
    }
  }

  async indexedFrom(): Promise<number> {
    if (this.#indexStart !== undefined) return this.#indexStart;
    const known = await this.#sub.get(INDEXED_FROM);
    // Nothing indexed yet: the index starts with the next entry written (none before it
    // exists while the store is empty, and a non-empty unindexed store is scanned).
    if (known === undefined) return Number.MAX_SAFE_INTEGER;
    const n = Number(known);
    this.#indexStart = Number.isSafeInteger(n) && n >= 0 ? n : 0;
    return this.#indexStart;
  }

  async readBody(digest: string): Promise<string | undefined> {
    if (!/^[0-9a-f]{64}$/.test(digest)) return undefined;
    return this.#sub.get(BODY + digest);
  }

  async close(): Promise<void> {
    // The database belongs to the caller (shared by every domain); nothing to release.
  }
}
