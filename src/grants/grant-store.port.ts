/**
 * The port to the grant store: issued grants (with their lineage links, revocation and
 * redemption) and the requestIds each runtime has used (the persisted replay guard).
 * The LevelDB adapter is grant-store.level.ts; its fake for fast tests, grant-store.memory.ts.
 */
import type { AuditEvent } from '../audit/index.js';
import type { RevocationEvent, RevocationLog } from './revocations.port.js';

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
