/**
 * Wiring of the grant domain: `createGrants(config, deps)` with plain arguments; the grant
 * store lives in `db.sublevel('grants')`. See docs/grants.md.
 */
import type { Database } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { LevelGrantStore } from './grant-store.level.js';
import { GrantService, type GrantsConfig, type GrantsDeps } from './pipeline.js';

export interface GrantsSettings {
  /** The appliance id (`iss`). */
  readonly issuer: string;
  /** Appliance-wide bound on ttlSeconds; at most the keys' grantMaxTtlSeconds. */
  readonly maxTtlSeconds: number;
  /** Default 60. */
  readonly clockSkewSeconds?: number;
  /** Default 4 (policy may bound it lower). */
  readonly maxDepth?: number;
  /** Default 10000. */
  readonly dependencyDeadlineMs?: number;
  /** Default 100000. */
  readonly replayCacheSize?: number;
}

export interface GrantsWiring extends Omit<GrantsDeps, 'store'> {
  readonly db: Database;
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
    dependencyDeadlineMs: positive(
      'grants.dependencyDeadlineMs',
      config.dependencyDeadlineMs ?? 10_000,
    ),
    replayCacheSize: positive('grants.replayCacheSize', config.replayCacheSize ?? 100_000),
  };
  const { db, ...services } = deps;
  return new GrantService(settings, { ...services, store: new LevelGrantStore(db) });
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
export { MemoryGrantStore, type GrantRecord, type GrantStore } from './grant-store.port.js';
export { sessionSigningInput, withoutQuote, requestDigest, type GrantRequest } from './request.js';
export * from './errors.js';
