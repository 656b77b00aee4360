/**
 * Runtimes in LevelDB: `db.sublevel('runtimes')` with keys `r!<runtimeId>` (the record as
 * JSON), `ek!<fingerprint>` and `n!<name>` (indices to the runtime id). Every change is one
 * synced batch on the root database.
 */
import { LevelRoom, type Database } from '../shared/db.level.js';
import { upgradeRecord, type RuntimeRecord, type RuntimeStore } from './runtime-store.port.js';

export class LevelRuntimeStore extends LevelRoom implements RuntimeStore {
  constructor(db: Database) {
    super(db, 'runtimes');
  }

  async get(runtimeId: string): Promise<RuntimeRecord | undefined> {
    const text = await this.sub.get(`r!${runtimeId}`);
    return text === undefined ? undefined : upgradeRecord(JSON.parse(text) as RuntimeRecord);
  }

  async scan(after: string | undefined, limit: number): Promise<RuntimeRecord[]> {
    const out: RuntimeRecord[] = [];
    // `r!` ids sort before `r"`: the range holds exactly the records.
    for await (const text of this.sub.values({
      ...(after === undefined ? { gte: 'r!' } : { gt: `r!${after}` }),
      lt: 'r"',
      limit,
    })) {
      out.push(upgradeRecord(JSON.parse(text) as RuntimeRecord));
    }
    return out;
  }

  findByEk(ekFingerprint: string): Promise<string | undefined> {
    return this.sub.get(`ek!${ekFingerprint}`);
  }

  findByName(name: string): Promise<string | undefined> {
    return this.sub.get(`n!${encodeURIComponent(name)}`);
  }

  async create(record: RuntimeRecord): Promise<void> {
    await this.write([
      { type: 'put', key: `r!${record.runtimeId}`, value: JSON.stringify(record) },
      { type: 'put', key: `ek!${record.ekFingerprint}`, value: record.runtimeId },
      { type: 'put', key: `n!${encodeURIComponent(record.name)}`, value: record.runtimeId },
    ]);
  }

  async update(record: RuntimeRecord): Promise<void> {
    await this.write([
      { type: 'put', key: `r!${record.runtimeId}`, value: JSON.stringify(record) },
    ]);
  }

  async delete(record: RuntimeRecord): Promise<void> {
    await this.write([
      { type: 'del', key: `r!${record.runtimeId}` },
      ...(await this.#indexDrops(record)),
    ]);
  }

  async release(record: RuntimeRecord): Promise<void> {
    await this.write([
      { type: 'put', key: `r!${record.runtimeId}`, value: JSON.stringify(record) },
      ...(await this.#indexDrops(record)),
    ]);
  }

  /** Index entries are dropped only where they still point to this runtime. */
  async #indexDrops(record: RuntimeRecord): Promise<{ type: 'del'; key: string }[]> {
    const keys = [`ek!${record.ekFingerprint}`, `n!${encodeURIComponent(record.name)}`];
    const owners = await this.sub.getMany(keys);
    return keys.flatMap((key, i) =>
      owners[i] === record.runtimeId ? [{ type: 'del' as const, key }] : [],
    );
  }
}
