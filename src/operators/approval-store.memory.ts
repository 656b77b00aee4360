/** An in-memory approval store, for service tests. */
import { requesterOf, type ApprovalRecord, type ApprovalStore } from './approval-store.port.js';

export class MemoryApprovalStore implements ApprovalStore {
  readonly #records = new Map<string, ApprovalRecord>();

  get(id: string): Promise<ApprovalRecord | undefined> {
    return Promise.resolve(this.#records.get(id));
  }

  put(record: ApprovalRecord): Promise<void> {
    this.#records.set(record.id, structuredClone(record));
    return Promise.resolve();
  }

  byTarget(target: string): Promise<ApprovalRecord[]> {
    return Promise.resolve(
      [...this.#records.values()]
        .filter((r) => r.target === target)
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt)),
    );
  }

  openBy(person: string): Promise<ApprovalRecord[]> {
    return Promise.resolve(
      [...this.#records.values()].filter(
        (r) => r.consumedAt === undefined && requesterOf(r) === person,
      ),
    );
  }

  list(limit: number): Promise<ApprovalRecord[]> {
    return Promise.resolve(
      [...this.#records.values()]
        .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
        .slice(0, limit),
    );
  }
}
