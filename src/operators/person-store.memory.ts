/** An in-memory operator registry, for service tests. */
import type { PersonRecord, PersonStore } from './person-store.port.js';

export class MemoryPersonStore implements PersonStore {
  readonly #records = new Map<string, PersonRecord>();

  get(id: string): Promise<PersonRecord | undefined> {
    return Promise.resolve(this.#records.get(id));
  }

  put(record: PersonRecord): Promise<void> {
    this.#records.set(record.id, structuredClone(record));
    return Promise.resolve();
  }

  list(): Promise<PersonRecord[]> {
    return Promise.resolve([...this.#records.values()]);
  }
}
