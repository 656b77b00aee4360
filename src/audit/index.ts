/**
 * Wiring for the audit domain: `createAudit(config, deps)` returns the AuditService.
 * The anchor (TpmAuditAnchor over the TPM facade) and the signer (the HSM's Ed25519 audit
 * key) are built by the caller; the log lives in `db.sublevel('audit')`. See docs/audit.md.
 *
 * Rooms: service.ts (what the appliance and the routes call), log.ts (group commit, anchoring,
 * the start-up check), entry.ts and facts.ts (entries and their typed facts), merkle.ts,
 * compact-range.ts, tiles.ts and tiled-tree.ts (the tree), checkpoint.ts (signed notes),
 * tlog.ts (tlog-tiles resources), consistency.ts and watch.ts (the log monitor); the anchor:
 * anchor.port.ts with anchor.tpm.ts and its fake anchor.memory.ts, anchor-pin.ts,
 * anchor-policy.ts, anchor-key.port.ts with anchor-key.pkcs11.ts, nv-certify.ts; the store:
 * audit-store.port.ts with audit-store.level.ts and audit-store.memory.ts; periods.ts,
 * periodic.ts and period-store.port/.level (log periods), retention.ts; query.ts and
 * timeline.ts (reads); bundle.ts, bundle-story.ts, verify-bundle.ts, verify-bundle-pair.ts,
 * verify-export.ts, replay.ts and full-check.ts (evidence and its offline check); cli.ts; audit.metered.ts;
 * errors.ts; config.ts (GRANTOR_AUDIT_*). The metered store and anchor, periodic.ts and
 * retention.ts wrap `#`-field objects with `overlay()` from src/shared/overlay.ts.
 */
import { randomBytes } from 'node:crypto';
import { clockFrom, systemClock } from '../shared/clock.js';
import type { Database } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import type { AuditAnchor } from './anchor.port.js';
import { LevelAuditStore } from './audit-store.level.js';
import type { AuditStore } from './audit-store.port.js';
import type { CheckpointSigner } from './checkpoint.js';
import { AuditLog } from './log.js';
import type { AuditService } from './service.js';
import { LevelPeriodStore } from './period-store.level.js';
import type { PeriodStore } from './period-store.port.js';
import { PeriodicAuditService } from './periodic.js';
import type { RetentionConfig } from './retention.js';
import { DefaultAuditService } from './service.js';

export interface AuditConfig {
  /** The log's origin: first checkpoint line and note key name, e.g. `grantor.example/appliance-1`. */
  readonly origin: string;
  /** Most entries per batch (default 512). */
  readonly maxBatchSize?: number;
  /**
   * Least time between anchors, i.e. NV write pairs (0: bounded by the TPM's speed). No
   * default here: the appliance's is GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS's (config.ts).
   */
  readonly minAnchorIntervalMs: number;
  /** How long TPM_RC_NV_RATE/TPM_RC_RETRY are retried before appends fail (default 5000). */
  readonly anchorRetryDeadlineMs?: number;
  /** Most entries per page of `entries()` (default 1000). */
  readonly maxPageSize?: number;
  /** Most candidate entries one query page examines (default 10 000). */
  readonly maxQueryScan?: number;
  /**
   * Length of a log period in hours (GRANTOR_AUDIT_PERIOD_HOURS): a new period (origin,
   * tree) when the current one is older; unset: periods start only on demand.
   */
  readonly periodHours?: number;
}

export interface AuditDeps {
  readonly db: Database;
  readonly anchor: AuditAnchor;
  readonly signer: CheckpointSigner;
  readonly now?: () => number;
  readonly logger?: DomainLogger;
  /** Wraps the log's store (e.g. to measure it, src/audit/audit.metered.ts). */
  readonly decorateStore?: (store: AuditStore) => AuditStore;
  /** Wraps the log periods' registry (e.g. to crash right after a period's start). */
  readonly decoratePeriods?: (periods: PeriodStore) => PeriodStore;
  /** Retention of frozen periods (retention.ts): the bundles' folder and the anchor pin. */
  readonly retention?: RetentionConfig;
}

function positiveInt(key: string, v: number, min = 1): number {
  if (!Number.isSafeInteger(v) || v < min)
    throw new ConfigError(key, `must be an integer >= ${min}`);
  return v;
}

export function createAudit(config: AuditConfig, deps: AuditDeps): AuditService {
  if (!/^[^\s+]+$/.test(config.origin)) {
    throw new ConfigError('audit.origin', 'must be one word without spaces or "+"');
  }
  const options = {
    maxBatchSize: positiveInt('audit.maxBatchSize', config.maxBatchSize ?? 512),
    minAnchorIntervalMs: positiveInt('audit.minAnchorIntervalMs', config.minAnchorIntervalMs, 0),
    anchorRetryDeadlineMs: positiveInt(
      'audit.anchorRetryDeadlineMs',
      config.anchorRetryDeadlineMs ?? 5000,
      0,
    ),
  };
  const maxPage = positiveInt('audit.maxPageSize', config.maxPageSize ?? 1000);
  const maxScan = positiveInt('audit.maxQueryScan', config.maxQueryScan ?? 10_000);
  const clock = deps.now === undefined ? systemClock : clockFrom(deps.now);
  const logger = deps.logger ?? silentLogger;
  const periodHours = config.periodHours;
  if (periodHours !== undefined) positiveInt('audit.periodHours', periodHours);
  return new PeriodicAuditService({
    origin: config.origin,
    periods: ((p: PeriodStore) => deps.decoratePeriods?.(p) ?? p)(
      new LevelPeriodStore(deps.db, deps.decorateStore),
    ),
    anchor: deps.anchor,
    clock,
    logger,
    ...(periodHours === undefined ? {} : { periodMs: periodHours * 3_600_000 }),
    ...(deps.retention === undefined ? {} : { retention: deps.retention }),
    build: (origin, store, base) => {
      const log = new AuditLog(
        store,
        deps.anchor,
        { origin, ...options, ...(base === undefined ? {} : { base }) },
        clock,
        logger,
      );
      const service = new DefaultAuditService(
        log,
        deps.anchor,
        deps.signer,
        origin,
        maxPage,
        (n) => randomBytes(n),
        store,
        maxScan,
      );
      return { log, service };
    },
  });
}

/**
 * `grantor provision`'s store step: create the store of a new log on an anchor at its
 * pinned genesis (AuditLog.provision). Resolves `false` when this log's store exists.
 */
export async function provisionAuditStore(
  config: { readonly origin: string },
  deps: { readonly db: Database; readonly anchor: AuditAnchor; readonly logger?: DomainLogger },
): Promise<boolean> {
  const log = new AuditLog(
    new LevelAuditStore(deps.db),
    deps.anchor,
    { origin: config.origin, maxBatchSize: 1, minAnchorIntervalMs: 0, anchorRetryDeadlineMs: 0 },
    systemClock,
    deps.logger,
  );
  try {
    return await log.provision();
  } finally {
    await log.close();
  }
}

export type { AuditAnchor, AnchorState, NvCertification } from './anchor.port.js';
export type { CheckpointSigner } from './checkpoint.js';
export type { AuditEntry, AuditEvent } from './entry.js';
export type { AuditFilter, QueryPage } from './query.js';
export type * from './facts.js';
export { MAX_BODY_LENGTH, fitReason } from './entry.js';
export { factHex, factId, factList, factText } from './facts.js';
export {
  AnchorError,
  AnchorKeyError,
  AnchorProvisionError,
  AuditNotFoundError,
  AuditNotProvisionedError,
  AuditRollbackError,
  AuditUnavailableError,
} from './errors.js';
export type { Appended, AuditStats } from './log.js';
export type {
  AuditExport,
  AuditService,
  LogService,
  PeriodInfo,
  ConsistencyProof,
  InclusionProof,
  SignedCheckpoint,
  VerifierInfo,
} from './service.js';
export { digestOf } from './service.js';
export type {
  AnchorPin,
  AnchorProvisionStep,
  TpmAnchorConfig,
  TpmAnchorIndices,
} from './anchor.tpm.js';
export { TpmAuditAnchor, expectedAnchorNames, provisionTpmAnchor } from './anchor.tpm.js';
export type { PinnedAnchor } from './anchor-pin.js';
export { readAnchorPin, writeAnchorPin } from './anchor-pin.js';
export type { AnchorWriteKey } from './anchor-key.port.js';
export { Pkcs11AnchorKey, type AnchorKeyTokenConfig } from './anchor-key.pkcs11.js';
