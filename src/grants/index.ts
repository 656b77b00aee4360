/**
 * Wiring of the grant domain: `createGrants(config, deps)` with plain arguments; the grant
 * store lives in `db.sublevel('grants')`; its settings of the appliance configuration are
 * config.ts's. See docs/grants.md.
 *
 * Rooms: pipeline.ts (GrantService, the domain's one face, and the request path: runtime,
 * freshness before the proof, proof, lineage, policy, audit, signature, store), context.ts
 * (config, ports, deadline, store and log failures shared by every room), request.schema.ts
 * (the body's one schema, every limit; the route declares it too), request.ts (the checked
 * body), freshness.ts with replay.ts (requestIds used and forgotten), proof.ts
 * (session signature or quote), lineage.ts (a child under its chain; the lineage view),
 * reasons.ts (what an entry's reasons hold), redeem.ts (redeem, outcome), revoke.ts
 * (grants, runtimes, trust changes), audit-pending.ts (the entry a change already made
 * owes, journalled with it, retried until written once), root-lock.ts (children against
 * revocation), refusals.ts (refusals aggregated for the log), unreleased.ts (allows a crash never
 * released), cedar-context.ts (the policy request of one decision), trust-cascade.ts
 * (withdrawn trust ends sessions and revokes grants), revocations.port.ts with
 * revocation-feed.ts and revocation-snapshot.ts (what gateways learn), grant-store.port.ts
 * with grant-store.level.ts and its fake grant-store.memory.ts, errors.ts, config.ts; testing.ts
 * (the service with fakes, for the tests beside each room). The claims are typed, with
 * their RFC 7638 thumbprint, in src/shared/grant-claims.ts (shared with the gateway); the
 * keys service signs them and owns the signature's low-S form.
 */
import type { AuditService } from '../audit/index.js';
import type { Database } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { silentLogger } from '../shared/log.js';
import { LevelGrantStore } from './grant-store.level.js';
import { GrantService, type GrantsConfig, type GrantsDeps } from './pipeline.js';
import { RequestPruner } from './replay.js';
import { markUnreleased, type UnreleasedAudit } from './unreleased.js';
import { pruneFeedEvery, type RevocationFeedSettings } from './revocation-feed.js';

export interface GrantsSettings {
  /** The appliance id (`iss`). */
  readonly issuer: string;
  /** Appliance-wide bound on ttlSeconds; at most the keys' grantMaxTtlSeconds. */
  readonly maxTtlSeconds: number;
  /** Default 60. */
  readonly clockSkewSeconds?: number;
  /** Default 4 (policy may bound it lower). */
  readonly maxDepth?: number;
  /** Most children of one grant, default 64 (`grant_width_exceeded` past it). */
  readonly maxChildren?: number;
  /** Default 10000. */
  readonly dependencyDeadlineMs?: number;
  /** Default 100000. */
  readonly replayCacheSize?: number;
  /** Between sweeps of expired requestIds, ms (default 60000; 0: no sweeps). */
  readonly requestPruneIntervalMs?: number;
  /** Most requestIds forgotten per batch of a sweep (default 1000; 10 batches a sweep). */
  readonly requestPruneBatch?: number;
  /** The revocation feed's bounds (revocation-feed.ts). */
  readonly revocationFeed?: RevocationFeedSettings;
  /** Lifetime of a signed revocation snapshot, seconds (default 300). */
  readonly revocationSnapshotTtlSeconds?: number;
}

export interface GrantsWiring extends Omit<GrantsDeps, 'store' | 'audit'> {
  readonly db: Database;
  /**
   * The log itself: appends, and the entries read by the start-up marking and before an
   * owed entry is appended again (its size, `treeSize`, tells where to look).
   */
  readonly audit: UnreleasedAudit & Partial<Pick<AuditService, 'treeSize'>>;
  /** How the start-up marking of unreleased allows went (unreleased.ts). */
  readonly onUnreleased?: (outcome: { marked: number } | { error: unknown }) => void;
}

function positive(key: string, value: number, min = 1): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(key, `must be an integer >= ${min}`);
  }
  return value;
}

export function createGrants(config: GrantsSettings, deps: GrantsWiring): GrantService {
  if (config.issuer === '') throw new ConfigError('grants.issuer', 'is required');
  const settings: GrantsConfig = {
    issuer: config.issuer,
    maxTtlSeconds: positive('grants.maxTtlSeconds', config.maxTtlSeconds),
    clockSkewSeconds: positive('grants.clockSkewSeconds', config.clockSkewSeconds ?? 60, 0),
    maxDepth: positive('grants.maxDepth', config.maxDepth ?? 4, 0),
    maxChildren: positive('grants.maxChildren', config.maxChildren ?? 64, 0),
    dependencyDeadlineMs: positive(
      'grants.dependencyDeadlineMs',
      config.dependencyDeadlineMs ?? 10_000,
    ),
    replayCacheSize: positive('grants.replayCacheSize', config.replayCacheSize ?? 100_000),
    ...(config.revocationFeed === undefined ? {} : { revocationFeed: config.revocationFeed }),
    ...(config.revocationSnapshotTtlSeconds === undefined
      ? {}
      : { revocationSnapshotTtlSeconds: config.revocationSnapshotTtlSeconds }),
  };
  const { db, ...services } = deps;
  const store = new LevelGrantStore(db);
  // Used requestIds are forgotten once their issuedAt is past the skew (plus as much again
  // for a clock stepped back); the sweeper stops when the database starts closing.
  const pruner = new RequestPruner(store, {
    intervalMs: positive(
      'grants.requestPruneIntervalMs',
      config.requestPruneIntervalMs ?? 60_000,
      0,
    ),
    batch: positive('grants.requestPruneBatch', config.requestPruneBatch ?? 1000),
    maxBatches: 10,
    graceMs: settings.clockSkewSeconds * 1000,
  });
  db.once('closing', () => void pruner.stop());
  pruner.start();
  const { onUnreleased, ...wired } = services;
  const { logger, metrics } = wired;
  const service = new GrantService(settings, { ...wired, store });
  // Feed events past their grants' lifetime are forgotten on the requestId sweep's cadence.
  const pruneMs = config.requestPruneIntervalMs ?? 60_000;
  if (pruneMs > 0) {
    const stop = pruneFeedEvery(service.revocations, pruneMs, {
      logger: logger ?? silentLogger,
      metrics,
    });
    db.once('closing', stop);
  }
  // Audit entries owed for revocations and outcomes a previous process applied (a kill
  // between the change and its entry), appended now; retried while this one runs.
  db.once('closing', () => {
    service.stopAuditRetries();
  });
  service.resumeOwedAudits().catch((e: unknown) => {
    (logger ?? silentLogger).error(
      { event: 'audit_entry_owed', err: e instanceof Error ? e.message : String(e) },
      'could not read the owed audit entries; they are appended at the next start',
    );
  });
  // Before the first decision of this process: allows a previous one never released.
  const marking = markUnreleased(wired.audit, store);
  service.holdDecisionsUntil(marking);
  marking.then(
    (marked) => onUnreleased?.({ marked }),
    (error: unknown) => onUnreleased?.({ error }),
  );
  return service;
}

export {
  GrantService,
  jwkThumbprint,
  type GrantView,
  type GrantsConfig,
  type GrantsDeps,
  type IssuedGrant,
  type Lineage,
  type RedeemResult,
  type RedemptionOutcome,
  type RevokeResult,
} from './pipeline.js';
export type { GrantRecord, GrantStore } from './grant-store.port.js';
export { MemoryGrantStore, createFakeGrantStore } from './grant-store.memory.js';
export { TrustCascade, type TrustCascadeDeps, type TrustCascadeResult } from './trust-cascade.js';
export {
  RevocationFeed,
  type RevocationFeedSettings,
  type RevocationPage,
  type RevokedNow,
} from './revocation-feed.js';
export {
  RevocationSnapshots,
  SNAPSHOT_TYP,
  type SignedSnapshot,
  type SnapshotSigner,
} from './revocation-snapshot.js';
export type { RevocationEvent, RevocationInput } from './revocations.port.js';
export { RequestPruner, type PruneSettings } from './replay.js';
export { NOT_RELEASED, markUnreleased } from './unreleased.js';
export {
  sessionSigningInput,
  withoutQuote,
  requestDigest,
  type GrantRequest,
  type GrantRequestBody,
} from './request.js';
export { GrantRequestSchema, Id } from './request.schema.js';
export * from './errors.js';
