/**
 * The runtime store in memory, for fast service tests; the LevelDB adapter
 * (runtime-store.level.ts) passes the same contract (runtime-store.test.ts).
 */
import type { RuntimeRecord, RuntimeStore } from './runtime-store.port.js';

export class MemoryRuntimeStore implements RuntimeStore {
  readonly #runtimes = new Map<string, RuntimeRecord>();
  readonly #ek = new Map<string, string>();
  readonly #names = new Map<string, string>();

  get(runtimeId: string): Promise<RuntimeRecord | undefined> {
    return Promise.resolve(this.#runtimes.get(runtimeId));
  }

  scan(after: string | undefined, limit: number): Promise<RuntimeRecord[]> {
    const ids = [...this.#runtimes.keys()].filter((id) => after === undefined || id > after).sort();
    return Promise.resolve(
      ids.slice(0, limit).flatMap((id) => {
        const r = this.#runtimes.get(id);
        return r === undefined ? [] : [r];
      }),
    );
  }

  findByEk(ekFingerprint: string): Promise<string | undefined> {
    return Promise.resolve(this.#ek.get(ekFingerprint));
  }

  findByName(name: string): Promise<string | undefined> {
    return Promise.resolve(this.#names.get(name));
  }

  create(record: RuntimeRecord): Promise<void> {
    this.#runtimes.set(record.runtimeId, record);
    this.#ek.set(record.ekFingerprint, record.runtimeId);
    this.#names.set(record.name, record.runtimeId);
    return Promise.resolve();
  }

  update(record: RuntimeRecord): Promise<void> {
    this.#runtimes.set(record.runtimeId, record);
    return Promise.resolve();
  }

  delete(record: RuntimeRecord): Promise<void> {
    this.#runtimes.delete(record.runtimeId);
    this.#dropIndices(record);
    return Promise.resolve();
  }

  release(record: RuntimeRecord): Promise<void> {
    this.#runtimes.set(record.runtimeId, record);
    this.#dropIndices(record);
    return Promise.resolve();
  }

  /** Index entries go only where they still point to this runtime. */
  #dropIndices(record: RuntimeRecord): void {
    if (this.#ek.get(record.ekFingerprint) === record.runtimeId)
      this.#ek.delete(record.ekFingerprint);
    if (this.#names.get(record.name) === record.runtimeId) this.#names.delete(record.name);
  }
}

export function createFakeRuntimeStore(): MemoryRuntimeStore {
  return new MemoryRuntimeStore();
}
