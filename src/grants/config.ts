/**
 * The grant domain's configuration section: the revocation feed's bounds (docs/protocol.md
 * §3.1, src/grants/revocation-feed.ts). Composed into AppConfig by src/shared/config.ts.
 */
import { integer, type FileKeys, type Source } from '../shared/config-parse.js';

export interface RevocationFeedLimits {
  /** Gateways waiting on `GET /v1/revocations` at once; one more is 503 `revocation_feed_full`. */
  readonly maxSubscribers: number;
  /** Longest wait of one long-poll (a `wait` asked for beyond it is cut to it). */
  readonly maxWaitMs: number;
  /** An answer the subscriber has not taken in this time closes its connection (dropped). */
  readonly sendTimeoutMs: number;
  /** Lifetime of a signed snapshot (`exp - iat`), seconds. */
  readonly snapshotTtlSeconds: number;
}

export const GRANTS_FILE_KEYS: FileKeys = {
  revocationFeedMaxSubscribers: 'GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS',
  revocationFeedMaxWaitMs: 'GRANTOR_REVOCATION_FEED_MAX_WAIT_MS',
  revocationFeedSendTimeoutMs: 'GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS',
  revocationSnapshotTtlSeconds: 'GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS',
};

export function revocationFeedLimits(src: Source): RevocationFeedLimits {
  return {
    // Each waiting gateway holds a connection: at most GRANTOR_MAX_CONNECTIONS of them.
    maxSubscribers: integer(src, 'GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS', 256, 1, 65_536),
    // A gateway asks for at most 60 s (the route's `wait`).
    maxWaitMs: integer(src, 'GRANTOR_REVOCATION_FEED_MAX_WAIT_MS', 25_000, 0, 60_000),
    sendTimeoutMs: integer(src, 'GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS', 10_000, 100, 120_000),
    snapshotTtlSeconds: integer(src, 'GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS', 300, 10, 3600),
  };
}
