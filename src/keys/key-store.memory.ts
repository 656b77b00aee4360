/** An in-memory key store for fast service tests (passes the same contract suite). */
import type { KeyRecord, KeyStore } from './key-store.port.js';

export class MemoryKeyStore implements KeyStore {
  readonly #records = new Map<string, string>();

  list(): Promise<KeyRecord[]> {
    return Promise.resolve([...this.#records.values()].map((t) => JSON.parse(t) as KeyRecord));
  }

  get(kid: string): Promise<KeyRecord | undefined> {
    const t = this.#records.get(kid);
    return Promise.resolve(t === undefined ? undefined : (JSON.parse(t) as KeyRecord));
  }

  putAll(records: readonly KeyRecord[]): Promise<void> {
    for (const r of records) this.#records.set(r.kid, JSON.stringify(r));
    return Promise.resolve();
  }
}
