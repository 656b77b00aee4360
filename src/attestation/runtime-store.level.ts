/**
 * Runtimes in LevelDB: `db.sublevel('runtimes')` with keys `r!<runtimeId>` (the record as
 * JSON), `ek!<fingerprint>` and `n!<name>` (indices to the runtime id). Every change is one
 * synced batch on the root database.
 */
import type { Database } from '../shared/db.level.js';
import type { RuntimeRecord, RuntimeStore } from './runtime-store.port.js';

export class LevelRuntimeStore implements RuntimeStore {
  private readonly sub;

  constructor(private readonly db: Database) {
    this.sub = db.sublevel('runtimes', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  async get(runtimeId: string): Promise<RuntimeRecord | undefined> {
    const text = await this.sub.get(`r!${runtimeId}`);
    return text === undefined ? undefined : (JSON.parse(text) as RuntimeRecord);
  }

  findByEk(ekFingerprint: string): Promise<string | undefined> {
    return this.sub.get(`ek!${ekFingerprint}`);
  }

  findByName(name: string): Promise<string | undefined> {
    return this.sub.get(`n!${encodeURIComponent(name)}`);
  }

  private async write(
    ops: readonly { type: 'put' | 'del'; key: string; value?: string }[],
  ): Promise<void> {
    await this.db.batch(
      ops.map((op) =>
        op.type === 'put'
          ? { type: 'put' as const, key: op.key, value: op.value ?? '', sublevel: this.sub }
          : { type: 'del' as const, key: op.key, sublevel: this.sub },
      ),
      { sync: true },
    );
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
      { type: 'del', key: `ek!${record.ekFingerprint}` },
      { type: 'del', key: `n!${encodeURIComponent(record.name)}` },
    ]);
  }
}
