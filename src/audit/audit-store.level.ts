/**
 * The audit store in LevelDB: `db.sublevel('audit')` of the appliance database, keys
 * `meta`, `e!<seq, 16 digits>` (entries as JSON) and `b!<index, 16 digits>` (batch
 * records). A batch of entries and its record go in one `batch(..., { sync: true })`.
 */
import type { Database } from '../shared/db.level.js';
import type { AuditStore, BatchRecord, StoreMeta } from './audit-store.port.js';

const pad = (n: number): string => n.toString().padStart(16, '0');
const ENTRY = 'e!';
const BATCH = 'b!';
const META = 'meta';

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Left to the log core to classify: a corrupt record is a store that does not match.
    return { corrupt: true };
  }
}

export class LevelAuditStore implements AuditStore {
  private readonly sub;

  constructor(
    private readonly db: Database,
    name = 'audit',
  ) {
    this.sub = db.sublevel(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  /** One synced write on the root database (sublevel batches do not type `sync`). */
  private async write(ops: readonly { key: string; value: string }[]): Promise<void> {
    await this.db.batch(
      ops.map((op) => ({ type: 'put' as const, key: op.key, value: op.value, sublevel: this.sub })),
      { sync: true },
    );
  }

  async readMeta(): Promise<unknown> {
    const text = await this.sub.get(META);
    return text === undefined ? undefined : parse(text);
  }

  async writeMeta(meta: StoreMeta): Promise<void> {
    await this.write([{ key: META, value: JSON.stringify(meta) }]);
  }

  async *readEntries(from: number, limit?: number): AsyncIterable<unknown> {
    const options = {
      gte: ENTRY + pad(from),
      lt: ENTRY + '~',
      ...(limit === undefined ? {} : { limit }),
    };
    for await (const value of this.sub.values(options)) yield parse(value);
  }

  async *readBatches(from: number): AsyncIterable<unknown> {
    for await (const value of this.sub.values({ gte: BATCH + pad(from), lt: BATCH + '~' })) {
      yield parse(value);
    }
  }

  async appendBatch(entries: readonly object[], batch: BatchRecord): Promise<void> {
    const ops = entries.map((e) => {
      const seq = (e as { seq: number }).seq;
      return { key: ENTRY + pad(seq), value: JSON.stringify(e) };
    });
    ops.push({ key: BATCH + pad(batch.index), value: JSON.stringify(batch) });
    await this.write(ops);
  }

  async close(): Promise<void> {
    // The database belongs to the caller (shared by every domain); nothing to release.
  }
}
