/** An in-memory token store, for service tests. */
import type { TokenRecord, TokenStore } from './token-store.port.js';

export class MemoryTokenStore implements TokenStore {
  private readonly records = new Map<string, TokenRecord>();

  get(id: string): Promise<TokenRecord | undefined> {
    return Promise.resolve(this.records.get(id));
  }

  put(record: TokenRecord): Promise<void> {
    this.records.set(record.id, { ...record });
    return Promise.resolve();
  }

  list(): Promise<TokenRecord[]> {
    return Promise.resolve([...this.records.values()]);
  }
}
