/** An in-memory token store, for service tests. */
import { People } from './people.js';
import { MemoryPersonStore } from './person-store.memory.js';
import type { TokenRecord, TokenStore } from './token-store.port.js';
import { OperatorTokens } from './tokens.js';

export class MemoryTokenStore implements TokenStore {
  readonly #records = new Map<string, TokenRecord>();

  get(id: string): Promise<TokenRecord | undefined> {
    return Promise.resolve(this.#records.get(id));
  }

  put(record: TokenRecord): Promise<void> {
    this.#records.set(record.id, { ...record });
    return Promise.resolve();
  }

  list(): Promise<TokenRecord[]> {
    return Promise.resolve([...this.#records.values()]);
  }
}

/**
 * Operator tokens on in-memory stores (tokens and the person registry), for tests: the
 * service itself never falls back to a fake registry.
 */
export function createFakeOperatorTokens(
  store: TokenStore = new MemoryTokenStore(),
  now: () => number = Date.now,
): OperatorTokens {
  return new OperatorTokens(store, now, new People(new MemoryPersonStore(), now));
}
