/**
 * The grant store in memory, for fast service tests; the LevelDB adapter
 * (grant-store.level.ts) passes the same tests in test/grants/grant-store.test.ts.
 */
import type * as port from './grant-store.port.js';
import type { RevocationBounds, RevocationEvent } from './revocations.port.js';

export class MemoryGrantStore implements port.GrantStore {
  readonly grants = new Map<string, port.GrantRecord>();
  readonly links = new Map<string, string[]>();
  readonly byRuntime = new Map<string, string[]>();
  readonly requests = new Map<string, number>();

  get(grantId: string): Promise<port.GrantRecord | undefined> {
    return Promise.resolve(this.grants.get(grantId));
  }

  create(record: port.GrantRecord, used?: port.UsedRequest): Promise<void> {
    if (used !== undefined) {
      this.requests.set(`${used.runtimeId}\n${used.requestId}`, used.expiresAt);
    }
    this.grants.set(record.grantId, record);
    this.byRuntime.set(record.runtimeId, [
      ...(this.byRuntime.get(record.runtimeId) ?? []),
      record.grantId,
    ]);
    if (record.parent !== null) {
      this.links.set(record.parent, [...(this.links.get(record.parent) ?? []), record.grantId]);
    }
    return Promise.resolve();
  }

  readonly pending = new Map<string, port.PendingAudit>();

  update(
    records: readonly port.GrantRecord[],
    revocations?: readonly RevocationEvent[],
    pending?: port.PendingAuditChange,
  ): Promise<void> {
    for (const p of pending?.put ?? []) this.pending.set(p.id, p);
    for (const id of pending?.done ?? []) this.pending.delete(id);
    for (const r of records) this.grants.set(r.grantId, r);
    for (const e of revocations ?? []) {
      this.revocations.push(e);
      this.revocationHead = Math.max(this.revocationHead, e.seq);
    }
    return Promise.resolve();
  }

  pendingAudits(limit: number): Promise<port.PendingAudit[]> {
    const ids = [...this.pending.keys()].sort().slice(0, limit);
    return Promise.resolve(ids.flatMap((id) => this.pending.get(id) ?? []));
  }

  readonly revocations: RevocationEvent[] = [];
  revocationHead = 0;
  revocationFloor = 0;

  revocationsSince(since: number, limit: number): Promise<RevocationEvent[]> {
    return Promise.resolve(this.revocations.filter((e) => e.seq > since).slice(0, limit));
  }

  revocationBounds(): Promise<RevocationBounds> {
    return Promise.resolve({ floor: this.revocationFloor, head: this.revocationHead });
  }

  pruneRevocations(beforeSec: number, limit: number): Promise<number> {
    let n = 0;
    while (n < limit) {
      const first = this.revocations[0];
      if (first === undefined || first.exp >= beforeSec) break;
      this.revocations.shift();
      this.revocationFloor = first.seq;
      n += 1;
    }
    return Promise.resolve(n);
  }

  children(grantId: string): Promise<string[]> {
    return Promise.resolve([...(this.links.get(grantId) ?? [])]);
  }

  grantsOf(runtimeId: string): Promise<string[]> {
    return Promise.resolve([...(this.byRuntime.get(runtimeId) ?? [])]);
  }

  hasRequest(runtimeId: string, requestId: string): Promise<boolean> {
    return Promise.resolve(this.requests.has(`${runtimeId}\n${requestId}`));
  }

  putRequest(runtimeId: string, requestId: string, expiresAt: number): Promise<void> {
    this.requests.set(`${runtimeId}\n${requestId}`, expiresAt);
    return Promise.resolve();
  }

  liveRequests(sinceMs: number, limit: number): Promise<port.LiveRequests> {
    const ids: port.LiveRequest[] = [];
    for (const [key, expiresAt] of this.requests) {
      if (expiresAt < sinceMs) continue;
      if (ids.length === limit) return Promise.resolve({ ids, complete: false });
      const [runtimeId = '', requestId = ''] = key.split('\n');
      ids.push({ runtimeId, requestId, expiresAt });
    }
    return Promise.resolve({ ids, complete: true });
  }

  reconciled = 0;

  reconciledUpTo(): Promise<number> {
    return Promise.resolve(this.reconciled);
  }

  setReconciledUpTo(seq: number): Promise<void> {
    this.reconciled = seq;
    return Promise.resolve();
  }

  pruneRequests(beforeMs: number, limit: number): Promise<number> {
    const old = [...this.requests]
      .filter(([, exp]) => exp < beforeMs)
      .sort(([, a], [, b]) => a - b)
      .slice(0, limit);
    for (const [key] of old) this.requests.delete(key);
    return Promise.resolve(old.length);
  }
}

export function createFakeGrantStore(): MemoryGrantStore {
  return new MemoryGrantStore();
}
