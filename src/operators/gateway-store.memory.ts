/** An in-memory gateway store, for service tests. */
import type { GatewayRecord, GatewayStore } from './gateway-store.port.js';

export class MemoryGatewayStore implements GatewayStore {
  readonly #records = new Map<string, GatewayRecord>();

  get(id: string): Promise<GatewayRecord | undefined> {
    const record = this.#records.get(id);
    return Promise.resolve(record === undefined ? undefined : { ...record });
  }

  put(record: GatewayRecord): Promise<void> {
    this.#records.set(record.id, { ...record });
    return Promise.resolve();
  }

  list(): Promise<GatewayRecord[]> {
    return Promise.resolve([...this.#records.values()].map((r) => ({ ...r })));
  }
}
