/**
 * The port to the grant store: issued grants (with their lineage links, revocation and
 * redemption) and the requestIds each runtime has used (the persisted replay guard).
 * The LevelDB adapter is grant-store.level.ts; MemoryGrantStore serves fast tests.
 */
import type { AuditEvent } from '../audit/index.js';
import type { RevocationBounds, RevocationEvent, RevocationLog } from './revocations.port.js';

/**
 * An audit entry owed for a change already written (audit-pending.ts): journaled in the
 * change's own synced write, removed once the entry is in the log.
 */
export interface PendingAudit {
  /** `<epoch ms, 16 digits>-<the entry's digest>`: sorts by when the change was written. */
  readonly id: string;
  readonly event: AuditEvent;
  /**
   * The log period `fromSeq` counts in. Absent from records journaled before it was kept:
   * read as period 0 (audit-pending.ts `#findInLog`).
   */
  readonly period?: number;
  /**
   * The period's size when the change was written: the entry, if it was ever appended, is
   * at or after this seq of that period, or in a later period. Null when the log had not
   * served yet in this process.
   */
  readonly fromSeq: number | null;
}

/** Journal records to write (`put`) or remove (`done`, by id) in an update's write. */
export interface PendingAuditChange {
  readonly put?: readonly PendingAudit[];
  readonly done?: readonly string[];
}

export interface Redemption {
  /** RFC 3339. */
  readonly at: string;
  readonly audience: string;
  readonly outcome: 'started' | 'succeeded' | 'failed' | null;
  /** The enrolled gateway that redeemed it (`gw_...`); absent on redemptions before issue 18. */
  readonly gateway?: string;
}

/** What the redeeming gateway reported after it executed (`POST .../outcome`, once). */
export interface Execution {
  /** RFC 3339. */
  readonly at: string;
  readonly gateway: string;
  readonly outcome: 'succeeded' | 'failed' | 'aborted';
  /** Hex SHA-256 of the action's result, as the gateway computed it; unverified by grantor. */
  readonly resultDigest?: string;
}

export interface GrantRecord {
  readonly grantId: string;
  readonly runtimeId: string;
  readonly action: string;
  readonly resource: string;
  readonly audience: string;
  readonly parent: string | null;
  readonly root: string;
  readonly depth: number;
  /** NumericDate seconds. */
  readonly iat: number;
  readonly exp: number;
  readonly auditSeq: number;
  /** RFC 3339 time of revocation, or null. */
  readonly revokedAt: string | null;
  readonly redemption: Redemption | null;
  /** Absent until the redeeming gateway reports its outcome. */
  readonly execution?: Execution;
}

export interface UsedRequest {
  readonly runtimeId: string;
  readonly requestId: string;
  /** Epoch ms: remembered until then. */
  readonly expiresAt: number;
}

export interface LiveRequest {
  readonly runtimeId: string;
  readonly requestId: string;
  /** Epoch ms. */
  readonly expiresAt: number;
}

export interface LiveRequests {
  readonly ids: LiveRequest[];
  readonly complete: boolean;
}

export interface GrantStore extends RevocationLog {
  get(grantId: string): Promise<GrantRecord | undefined>;
  /**
   * Store a new grant and its link under its parent, and (in the same atomic write) the
   * requestId of the request that produced it.
   */
  create(record: GrantRecord, used?: UsedRequest): Promise<void>;
  /**
   * Replace grants (revocation, redemption) in one atomic write, with the revocation feed's
   * events for them (revocations.port.ts) in that same synced write.
   */
  update(
    records: readonly GrantRecord[],
    revocations?: readonly RevocationEvent[],
    pending?: PendingAuditChange,
  ): Promise<void>;
  /** The owed audit entries (journal records), oldest first, at most `limit`. */
  pendingAudits(limit: number): Promise<PendingAudit[]>;
  /** Ids of the direct children of a grant. */
  children(grantId: string): Promise<string[]>;
  /** Ids of the grants issued to a runtime (indexed at create; the runtime revoke's cascade). */
  grantsOf(runtimeId: string): Promise<string[]>;
  /** Whether this runtime used this requestId (and the entry has not expired). */
  hasRequest(runtimeId: string, requestId: string): Promise<boolean>;
  /** Remember a used requestId until `expiresAt` (epoch ms). */
  putRequest(runtimeId: string, requestId: string, expiresAt: number): Promise<void>;
  /**
   * The requestIds remembered with an expiry at or after `sinceMs`, at most `limit` of them;
   * `complete` is false when there were more (the replay guard then keeps asking the store).
   */
  liveRequests(sinceMs: number, limit: number): Promise<LiveRequests>;
  /**
   * How far the audit log was checked for allows whose grant was never released (the next
   * entry to check; 0 before the first check), and the setter.
   */
  reconciledUpTo(): Promise<number>;
  setReconciledUpTo(seq: number): Promise<void>;
  /**
   * Forget at most `limit` requestIds whose `expiresAt` is before `beforeMs`, oldest
   * first; returns how many were forgotten (fewer than `limit`: none older is left).
   */
  pruneRequests(beforeMs: number, limit: number): Promise<number>;
}

export class MemoryGrantStore implements GrantStore {
  readonly grants = new Map<string, GrantRecord>();
  readonly links = new Map<string, string[]>();
  readonly byRuntime = new Map<string, string[]>();
  readonly requests = new Map<string, number>();

  get(grantId: string): Promise<GrantRecord | undefined> {
    return Promise.resolve(this.grants.get(grantId));
  }

  create(record: GrantRecord, used?: UsedRequest): Promise<void> {
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

  readonly pending = new Map<string, PendingAudit>();

  update(
    records: readonly GrantRecord[],
    revocations?: readonly RevocationEvent[],
    pending?: PendingAuditChange,
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

  pendingAudits(limit: number): Promise<PendingAudit[]> {
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

  liveRequests(sinceMs: number, limit: number): Promise<LiveRequests> {
    const ids: LiveRequest[] = [];
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
