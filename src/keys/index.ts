/**
 * Wiring of the key domain: the PKCS#11 signer, the LevelDB key store and the service.
 * Other domains call the KeyService; only this file knows the concrete adapters.
 *
 * Rooms: key-service.ts (lifecycle, signing, JWKS) and grant-batch.ts (batch-signed
 * grants); jwk.ts (public-key encodings); the key store (key-store.port/.level/.memory); the
 * HSM port (signer.port.ts) with its fake (signer.memory.ts), metering (signer.metered.ts) and
 * deadline timer (signer.deadlines.ts); the PKCS#11 adapter (signer.pkcs11.ts: connection,
 * pool, recovery, dispatch; library.pkcs11.ts, token.pkcs11.ts (token and login, shared
 * with the audit anchor's write key), key-inspection.pkcs11.ts, sign-batch.pkcs11.ts; the
 * signing thread in signer.thread.pkcs11.ts and its body sign.worker.pkcs11.ts);
 * hsm-check.pkcs11.ts (`grantor doctor`'s look at a token); cli.ts (`grantor keys ...`);
 * audit-events.ts (a key's lifecycle as audit entries); errors.ts; config.ts (the token, PIN and signing settings of the appliance
 * configuration); testing.ts (the service with fakes). See docs/keys.md.
 */
import type { Database } from '../shared/db.level.js';
import type { GrantBatchOptions } from './grant-batch.js';
import { KeyService, type KeyLifecycleEvent } from './key-service.js';
import { LevelKeyStore } from './key-store.level.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import { Pkcs11Signer } from './signer.pkcs11.js';
import type { HsmSigner } from './signer.port.js';

export interface KeysConfig {
  /** Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so). */
  readonly modulePath: string;
  /** The token is found by its label (slot numbers change across re-initialisation). */
  readonly tokenLabel: string;
  /** The user PIN, already read from its file or variable. Never logged. */
  readonly pin: string;
  /** Scheduled grant-key rotation period; 0 disables it. */
  readonly rotationPeriodSeconds: number;
  /** The longest grant lifetime; bounds how long a retired key stays published. */
  readonly grantMaxTtlSeconds: number;
  /** Deadline of one signing call. */
  readonly signDeadlineMs: number;
  /** Sessions signing in parallel (default 4). */
  readonly sessionPoolSize?: number;
  /** Signing threads (default: the number of cores, at most sessionPoolSize). */
  readonly signThreads?: number;
  /** Minimum time between two recovery attempts after an HSM fault (default 1000). */
  readonly recoveryBackoffMs?: number;
  /** Upper bound of the JWKS max-age (default 300). */
  readonly jwksMaxAgeSeconds?: number;
  /** Scheduler period for rotation and retirement (default 5000; 0 disables the timer). */
  readonly maintenanceIntervalMs?: number;
  /** Prefix of HSM object labels (default `grantor`). */
  readonly labelPrefix?: string;
  /** Batch-signed grants (docs/protocol.md §3); absent: one JWS per grant. */
  readonly grantBatch?: GrantBatchOptions;
  /**
   * The audit checkpoint key's token, when it is not the grant key's: needed when the grant
   * key lives in the TPM (tpm2-pkcs11 has no Ed25519). Same session pool and deadline.
   */
  readonly audit?: {
    readonly modulePath: string;
    readonly tokenLabel: string;
    /** Never logged. */
    readonly pin: string;
  };
}

export interface KeysDeps {
  readonly db: Database;
  readonly logger?: DomainLogger;
  readonly now?: () => number;
  /** The audit hook: called before each key lifecycle change takes effect. */
  readonly onLifecycle?: (event: KeyLifecycleEvent) => Promise<void>;
  /** Wraps the PKCS#11 signer (e.g. to measure it, src/keys/signer.metered.ts). */
  readonly decorateSigner?: (signer: HsmSigner) => HsmSigner;
}

export async function createKeys(config: KeysConfig, deps: KeysDeps): Promise<KeyService> {
  const logger = deps.logger ?? silentLogger;
  const token = (t: { modulePath: string; tokenLabel: string; pin: string }): HsmSigner => {
    const signer = new Pkcs11Signer(
      {
        modulePath: t.modulePath,
        tokenLabel: t.tokenLabel,
        pin: t.pin,
        sessionPoolSize: config.sessionPoolSize ?? 4,
        signDeadlineMs: config.signDeadlineMs,
        recoveryBackoffMs: config.recoveryBackoffMs ?? 1000,
        ...(config.signThreads === undefined ? {} : { signThreads: config.signThreads }),
      },
      logger,
    );
    return deps.decorateSigner?.(signer) ?? signer;
  };
  const signer = token(config);
  return KeyService.start(
    {
      rotationPeriodSeconds: config.rotationPeriodSeconds,
      grantMaxTtlSeconds: config.grantMaxTtlSeconds,
      jwksMaxAgeSeconds: config.jwksMaxAgeSeconds ?? 300,
      maintenanceIntervalMs: config.maintenanceIntervalMs ?? 5000,
      labelPrefix: config.labelPrefix ?? 'grantor',
      ...(config.grantBatch === undefined ? {} : { grantBatch: config.grantBatch }),
    },
    {
      signer,
      ...(config.audit === undefined ? {} : { auditSigner: token(config.audit) }),
      store: new LevelKeyStore(deps.db),
      logger,
      ...(deps.now === undefined ? {} : { now: deps.now }),
      ...(deps.onLifecycle === undefined ? {} : { onLifecycle: deps.onLifecycle }),
    },
  );
}

export { KeyService } from './key-service.js';
export type {
  AuditJwk,
  GrantJwk,
  Jwks,
  KeyLifecycleEvent,
  KeyLifecycleReason,
  KeyServiceOptions,
  PublishedKeySet,
  RotationResult,
  SignableClaims,
} from './key-service.js';
export type { KeyPurpose, KeyRecord, KeyState } from './key-store.port.js';
export type { GrantBatchOptions } from './grant-batch.js';
export type { KeyAlgorithm, PublicJwk } from './signer.port.js';
export * from './errors.js';
