/**
 * Grants in LevelDB: `db.sublevel('grants')` with keys `g!<grantId>` (the record as JSON),
 * `c!<parentId>!<childId>` (lineage links) and `q!<runtimeId>!<requestId>` (used
 * requestIds, value: expiry in epoch ms). Grant writes are synced batches. A requestId is
 * written unsynced: LevelDB's log is sequential, so the synced write of the grant that
 * request produced makes it durable before the grant is released; a crash can only forget
 * the id of a request that released nothing.
 */
import type { Database } from '../shared/db.level.js';
import type { GrantRecord, GrantStore } from './grant-store.port.js';

// encodeURIComponent leaves `!` (the key separator) as is: escape it too.
const enc = (id: string): string => encodeURIComponent(id).replace(/!/g, '%21');

export class LevelGrantStore implements GrantStore {
  private readonly sub;

  constructor(private readonly db: Database) {
    this.sub = db.sublevel('grants', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  async get(grantId: string): Promise<GrantRecord | undefined> {
    const text = await this.sub.get(`g!${enc(grantId)}`);
    return text === undefined ? undefined : (JSON.parse(text) as GrantRecord);
  }

  private async write(ops: readonly { key: string; value: string }[], sync = true): Promise<void> {
    await this.db.batch(
      ops.map((op) => ({ type: 'put' as const, key: op.key, value: op.value, sublevel: this.sub })),
      { sync },
    );
  }

  async create(record: GrantRecord): Promise<void> {
    await this.write([
      { key: `g!${enc(record.grantId)}`, value: JSON.stringify(record) },
      ...(record.parent === null
        ? []
        : [{ key: `c!${enc(record.parent)}!${enc(record.grantId)}`, value: '' }]),
    ]);
  }

  async update(records: readonly GrantRecord[]): Promise<void> {
    await this.write(
      records.map((r) => ({ key: `g!${enc(r.grantId)}`, value: JSON.stringify(r) })),
    );
  }

  async children(grantId: string): Promise<string[]> {
    const prefix = `c!${enc(grantId)}!`;
    const out: string[] = [];
    for await (const key of this.sub.keys({ gte: prefix, lt: `${prefix}\uffff` })) {
      out.push(decodeURIComponent(key.slice(prefix.length)));
    }
    return out;
  }

  async hasRequest(runtimeId: string, requestId: string): Promise<boolean> {
    return (await this.sub.get(`q!${enc(runtimeId)}!${enc(requestId)}`)) !== undefined;
  }

  async putRequest(runtimeId: string, requestId: string, expiresAt: number): Promise<void> {
    await this.write(
      [{ key: `q!${enc(runtimeId)}!${enc(requestId)}`, value: String(expiresAt) }],
      false,
    );
  }
}
