/**
 * What every room of the grant path shares: its configuration and ports, the deadline on
 * a dependency, the codes a failing store or log answers with, the per-grant queue and the
 * per-root locks (so that issuance, redemption and revocation order against each other).
 */
import { createHash } from 'node:crypto';
import type { AttestationService } from '../attestation/index.js';
import type { AuditService } from '../audit/index.js';
import { AuditUnavailableError } from '../audit/index.js';
import { HsmUnavailableError, type KeyService } from '../keys/index.js';
import { PolicyUnavailableError, type PolicyDecider } from '../policy/index.js';
import { GrantorError, UnavailableError } from '../shared/errors.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import type { DomainLogger } from '../shared/log.js';
import type { GrantorMetrics } from '../shared/metrics.js';
import { PendingAudits, type PendingAuditLog } from './audit-pending.js';
import type { AudienceGateways } from './cedar-context.js';
import { GrantStoreUnavailableError } from './errors.js';
import type { GrantStore } from './grant-store.port.js';
import type { RefusalWindowOptions } from './refusals.js';
import { RevocationFeed, type RevocationFeedSettings } from './revocation-feed.js';
import { RootLocks } from './root-lock.js';

export interface GrantsConfig {
  /** The appliance id: the grants' `iss`. */
  readonly issuer: string;
  /** Appliance-wide bound on ttlSeconds (policy may cap lower). Must not exceed the keys' bound. */
  readonly maxTtlSeconds: number;
  /** Allowed distance of issuedAt from the appliance clock, both ways. */
  readonly clockSkewSeconds: number;
  /** Appliance-wide bound on lineage depth (policy may bound it lower). */
  readonly maxDepth: number;
  /** Most children of one grant (stored ones, live or not, and those in flight). */
  readonly maxChildren: number;
  /**
   * Deadline of each dependency call on the request path (an audit append, a decision, a
   * signature, the start-up hold); past it the request fails closed with the dependency's
   * 503 (`GrantContext.deadline`, the one owner).
   */
  readonly dependencyDeadlineMs: number;
  /** Most requestIds kept in memory (all are persisted). */
  readonly replayCacheSize: number;
  /** How refused requests are aggregated in the audit log (default: 60 s windows). */
  readonly refusals?: RefusalWindowOptions;
  /** The revocation feed's bounds (revocation-feed.ts). */
  readonly revocationFeed?: RevocationFeedSettings;
  /** Lifetime of a signed revocation snapshot, seconds (default 300). */
  readonly revocationSnapshotTtlSeconds?: number;
}

/** The services the pipeline calls (ports: the real ones in production, fakes in tests). */
export interface GrantsDeps {
  readonly attestation: Pick<AttestationService, 'getRuntime' | 'sessionFor' | 'proveQuote'>;
  /** The engine itself (decides in the event loop) or PolicyWorkers (on worker threads). */
  readonly policy: PolicyDecider;
  /**
   * The log: appends; with `treeSize`, `currentPeriod` and `inPeriod`, an owed entry is
   * never appended twice (audit-pending.ts).
   */
  readonly audit: Pick<AuditService, 'append'> & PendingAuditLog;
  readonly keys: Pick<KeyService, 'signGrantToken'> &
    Partial<Pick<KeyService, 'activeGrantKid' | 'signJws'>>;
  readonly store: GrantStore;
  readonly random?: (n: number) => Buffer;
  /** The enrolled gateways per audience, for the policy context (absent: none known). */
  readonly gateways?: AudienceGateways;
  /** The grants logger: background work (owed audit entries, the feed's pruner). */
  readonly logger?: DomainLogger;
  readonly metrics?: Pick<
    GrantorMetrics,
    'revocationFeedPruneFailures' | 'grantsAuditOwed' | 'grantsAuditRetries'
  >;
}

/** A runtime as the attestation service shows it. */
export type RuntimeView = Awaited<ReturnType<AttestationService['getRuntime']>>;

export const sha256Hex = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex');

export const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

/** What the request path waits on, each answering its own 503 past the deadline. */
export type Dependency = 'audit' | 'policy' | 'hsm' | 'startup';

const OVERRUN: Readonly<Record<Dependency, () => GrantorError>> = {
  audit: () => new AuditUnavailableError('the audit log did not commit within its deadline'),
  policy: () => new PolicyUnavailableError('the policy engine did not decide within its deadline'),
  hsm: () => new HsmUnavailableError('the HSM did not sign within its deadline'),
  startup: () =>
    new GrantStoreUnavailableError({
      details: { reason: 'still marking the allows a previous run never released' },
    }),
};

/** The deadline, as an error of the dependency's own kind. */
async function within<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(onTimeout());
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Failures of a dependency keep their own unavailable code; anything else becomes `fallback`. */
export function unavailable(e: unknown, fallback: (cause: unknown) => GrantorError): GrantorError {
  if (e instanceof UnavailableError) return e;
  return fallback(e);
}

export class GrantContext {
  readonly config: GrantsConfig;
  readonly deps: GrantsDeps;
  readonly #queue = new KeyedQueue();
  /** Child issuance (shared) against revocation (exclusive), per lineage root. */
  readonly roots = new RootLocks();
  /** Every revocation applied, sequenced, for gateways (docs/protocol.md §3.1). */
  readonly revocations: RevocationFeed;

  /** Audit entries owed for revocations and outcomes already written (audit-pending.ts). */
  readonly owed: PendingAudits;

  constructor(config: GrantsConfig, deps: GrantsDeps) {
    this.config = config;
    this.deps = deps;
    this.revocations = new RevocationFeed(deps.store, config.revocationFeed);
    this.owed = new PendingAudits({
      store: deps.store,
      log: deps.audit,
      append: (event) => this.append(event),
      logger: deps.logger,
      metrics: deps.metrics,
    });
  }

  /**
   * The one owner of the request path's deadlines (docs/grants.md "Deadlines"): `work` not
   * settled within `dependencyDeadlineMs` fails with the dependency's own 503 code. The key
   * service's and the policy workers' own deadlines guard their resources (a stuck session
   * or worker is replaced) and answer the same codes when they fire first.
   */
  deadline<T>(dependency: Dependency, work: Promise<T>): Promise<T> {
    return within(work, this.config.dependencyDeadlineMs, OVERRUN[dependency]);
  }

  async append(
    event: Parameters<AuditService['append']>[0],
  ): Promise<{ seq: number; hash: string }> {
    const work = this.deps.audit.append(event);
    try {
      return await this.deadline('audit', work);
    } catch (e) {
      if (event.type === 'grant.decision' && event.decision === 'allow') {
        // A late commit of this "allow" would be unmarked: mark it when it lands.
        work.then(
          () =>
            this.deps.audit
              .append({
                ...event,
                type: 'grant.issue_failed',
                decision: 'failed',
                reasons: ['audit_unavailable'],
              })
              .catch(() => undefined),
          () => undefined,
        );
      }
      throw unavailable(
        e,
        (cause) => new AuditUnavailableError('the audit log is unavailable', { cause }),
      );
    }
  }

  async storeCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof GrantorError) throw e;
      throw new GrantStoreUnavailableError({ cause: e });
    }
  }

  /** Run `fn` after every earlier call for the same key. */
  serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(key, fn);
  }

  /** Run `fn` holding every key of `keys` (taken in sorted order: no cycle with another). */
  serialAll<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const hold = (i: number): Promise<T> => {
      const key = sorted[i];
      return key === undefined ? fn() : this.#queue.run(key, () => hold(i + 1));
    };
    return hold(0);
  }
}
