/**
 * The revocation feed's records (docs/protocol.md §3.1): every revocation applied to a grant
 * or a runtime, with a monotonic sequence number, written in the same synced batch as the
 * revocation itself (LevelGrantStore.update), kept until what it revoked could no longer be
 * used anyway (`exp`), so that a gateway verifying offline can learn of it.
 */

/** One revocation as it is recorded and served. */
export type RevocationEvent =
  | {
      readonly seq: number;
      readonly kind: 'grant';
      readonly grantId: string;
      readonly runtimeId: string;
      /** RFC 3339. */
      readonly at: string;
      /** NumericDate: the grant's own `exp`; past it the event is forgotten. */
      readonly exp: number;
    }
  | {
      readonly seq: number;
      readonly kind: 'runtime';
      readonly runtimeId: string;
      readonly at: string;
      /** NumericDate: the revoke time plus the longest grant lifetime. */
      readonly exp: number;
    };

/** An event before the feed gives it its sequence number. */
export type RevocationInput = RevocationEvent extends infer E
  ? E extends RevocationEvent
    ? Omit<E, 'seq'>
    : never
  : never;

/** What the store keeps: events after `floor`, up to `head` (0, 0 when none was written). */
export interface RevocationBounds {
  /** The highest sequence number forgotten (pruned); 0 before the first prune. */
  readonly floor: number;
  /** The highest sequence number written. */
  readonly head: number;
}

/** The feed's side of the grant store (implemented by the grant store adapters). */
export interface RevocationLog {
  /** Events with `seq > since`, ascending, at most `limit`. */
  revocationsSince(since: number, limit: number): Promise<RevocationEvent[]>;
  revocationBounds(): Promise<RevocationBounds>;
  /**
   * Forget, oldest first, at most `limit` events of the prefix whose `exp` is before
   * `beforeSec` (stops at the first one still needed), raising `floor` in the same write;
   * returns how many were forgotten.
   */
  pruneRevocations(beforeSec: number, limit: number): Promise<number>;
}
