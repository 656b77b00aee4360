/**
 * The composition root: builds every domain from the configuration with plain constructor
 * arguments, in dependency order, and the HTTP app over them. Used by main.ts (the
 * server), cli.ts (provisioning and ceremonies) and the end-to-end tests.
 *
 * Order: TPM -> database -> audit (its checkpoint key is resolved lazily from the keys
 * service, so the log can open first) -> keys (lifecycle events are audited) -> policy ->
 * attestation -> operators -> HTTP.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import {
  createAudit,
  expectedAnchorNames,
  provisionAuditStore,
  provisionTpmAnchor,
  readAnchorPin,
  writeAnchorPin,
  TpmAuditAnchor,
  Pkcs11AnchorKey,
  AnchorKeyError,
  type AnchorProvisionStep,
  type AnchorWriteKey,
  type AuditEvent,
  type AuditService,
  type PinnedAnchor,
} from './audit/index.js';
import { meterAudit } from './audit/audit.metered.js';
import {
  AttestationTrust,
  createAttestation,
  loadEnrollmentRules,
  loadReferencePolicies,
  type AttestationService,
} from './attestation/index.js';
import { TrustCascade, createGrants, type GrantService } from './grants/index.js';
import { createKeys, type KeyService } from './keys/index.js';
import { auditKeyLifecycle } from './keys/audit-events.js';
import { HsmUnavailableError } from './keys/errors.js';
import { MeteredSigner } from './keys/signer.metered.js';
import { approvalPolicyFromSettings, createOperators, type Operators } from './operators/index.js';
import { auditOperatorEvents } from './operators/audit-events.js';
import {
  LevelPolicyArchive,
  PolicyWorkers,
  createAuditedPolicyEngine,
  type PolicyArchive,
  type PolicyDecider,
  type PolicyEngine,
  type PolicySetInfo,
} from './policy/index.js';
import type { AppConfig } from './shared/config.js';
import { openDatabase, type Database } from './shared/db.level.js';
import { ConfigError, GrantorError } from './shared/errors.js';
import { fileConfigError } from './startup-cause.js';
import { createMetrics, type GrantorMetrics } from './shared/metrics.js';
import { marshalTpmtPublic } from './tpm/marshal/public.js';
import { APPLIANCE_AK_TEMPLATE } from './tpm/templates.js';
import { TpmUnavailableError } from './tpm/errors.js';
import { MeteredTpm } from './tpm/tpm.metered.js';
import { readOwnerAuth } from './tpm/owner-auth.js';
import { openTpm } from './tpm/tpm.native.js';
import type { TpmPort } from './tpm/tpm.port.js';

export interface Appliance {
  readonly config: AppConfig;
  readonly tpm: TpmPort;
  readonly db: Database;
  readonly audit: AuditService;
  readonly keys: KeyService;
  readonly policy: PolicyEngine;
  /** What decides grant requests: the policy workers, or the engine itself (0 threads). */
  readonly decisions: PolicyDecider;
  /**
   * An operator's reload of the policy set (`by`: the operator id), audited like a watched
   * one (`policy.reloaded` / `policy.reload_refused`); resolves once its entry is written.
   */
  reloadPolicy(by: string): Promise<PolicySetInfo>;
  /** Every policy set ever active, by hash (kept before it activates: docs/policy.md). */
  readonly policyArchive: PolicyArchive;
  readonly attestation: AttestationService;
  readonly operators: Operators;
  /** The EK CA bundle and reference policies, changed by operators under dual control. */
  readonly attestationTrust: AttestationTrust;
  readonly grants: GrantService;
  /** Counted into by the TPM, the HSM signer and the audit log; served by the app. */
  readonly metrics: GrantorMetrics;
  /** Set when the start-up check refused the audit log: every request answers it. */
  readonly lockdown: GrantorError | undefined;
  close(): Promise<void>;
}

/** Files named directly, plus the files with `ext` in named folders (sorted). */
export async function expandPaths(paths: readonly string[], ext: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const s = await stat(p);
    if (s.isDirectory()) {
      const names = (await readdir(p)).filter((n) => n.endsWith(ext)).sort();
      out.push(...names.map((n) => join(p, n)));
    } else {
      out.push(p);
    }
  }
  return out;
}

async function readBundle(paths: readonly string[]): Promise<string> {
  const files = await expandPaths(paths, '.pem');
  const pems = await Promise.all(files.map((f) => readFile(f, 'utf8')));
  return pems.join('\n');
}

/**
 * The anchor write key's token (src/audit/anchor-key.pkcs11.ts): the audit token when
 * configured, else the main one. Provisioning creates the key; a start only finds it, and
 * signs with it on a signing thread.
 */
function anchorWriteKey(
  config: AppConfig,
  use: { create: true } | { signThread: true },
): Pkcs11AnchorKey {
  const token = config.auditHsm ?? config.hsm;
  return new Pkcs11AnchorKey(
    { modulePath: token.module, tokenLabel: token.tokenLabel, pin: token.pin },
    use,
  );
}

function anchorConfig(config: AppConfig, pin?: PinnedAnchor, writeKey?: AnchorWriteKey) {
  const indices = {
    counterIndex: config.audit.nvCounterIndex,
    extendIndex: config.audit.nvExtendIndex,
  };
  return {
    ...indices,
    pinnedNames: pin?.names ?? config.audit.pinnedNames ?? expectedAnchorNames(indices),
    ...(pin === undefined
      ? {}
      : { pinnedGenesis: pin.genesisCounter, pinnedAkPublic: pin.akPublic }),
    ...(writeKey === undefined ? {} : { writeKey }),
    ...(pin?.writeKey === undefined
      ? {}
      : { pinnedWritePolicy: Buffer.from(pin.writeKey.policy, 'hex') }),
    // NV_Certify (checkpoint ?nonce=) is signed by a restricted P-256 AK derived as an
    // endorsement-hierarchy primary from this template (the same key every time).
    akTemplate: marshalTpmtPublic(APPLIANCE_AK_TEMPLATE),
  };
}

/**
 * The anchor pin (src/audit/anchor-pin.ts), checked against the rest of the configuration;
 * `undefined` when the appliance was never provisioned.
 */
async function readPin(config: AppConfig): Promise<PinnedAnchor | undefined> {
  const key = 'GRANTOR_AUDIT_ANCHOR_PIN';
  const pin = await readAnchorPin(config.audit.pinFile, key);
  if (pin === undefined) return undefined;
  if (
    pin.counterIndex !== config.audit.nvCounterIndex ||
    pin.extendIndex !== config.audit.nvExtendIndex
  ) {
    throw new ConfigError(key, 'the anchor pin names other NV indices than GRANTOR_AUDIT_NV_*');
  }
  const names = config.audit.pinnedNames;
  if (
    names !== undefined &&
    (names.counter !== pin.names.counter || names.extend !== pin.names.extend)
  ) {
    throw new ConfigError(key, 'the anchor pin disagrees with GRANTOR_AUDIT_NV_NAMES');
  }
  // Owner-written indices: whoever holds the owner auth could rewrite them (issue 13).
  if (pin.writeKey === undefined) {
    throw new ConfigError(
      key,
      `${config.audit.pinFile} pins owner-written anchor indices (grantor-anchor-pin/1), which this version refuses: re-provision with a write policy (docs/audit.md "Migration")`,
    );
  }
  const byPolicy = expectedAnchorNames(pin, Buffer.from(pin.writeKey.policy, 'hex'));
  if (byPolicy.counter !== pin.names.counter || byPolicy.extend !== pin.names.extend) {
    throw new ConfigError(key, 'the anchor pin names are not those of its write policy');
  }
  return pin;
}

/** Provisioning's steps: the TPM's (src/audit/anchor.tpm.ts), then the pin, then the store. */
export type ProvisionStep = AnchorProvisionStep | 'write_pin' | 'create_store';

/**
 * Provisioning (`grantor provision`), the one explicit act that starts an audit log:
 * defines and writes the anchor NV indices, pins their names and the genesis counter in
 * the pin file, and creates the log's store on the anchor at that genesis. Resumes from a
 * stop after any step; a second run on a provisioned appliance changes nothing. Keys are
 * created by the keys service on first start. Returns what it did, for the CLI.
 */
export async function provisionAppliance(
  config: AppConfig,
  tpm: TpmPort,
  options: { afterStep?: (step: ProvisionStep) => Promise<void> | void } = {},
): Promise<string[]> {
  const writeKey = anchorWriteKey(config, { create: true });
  try {
    return await provisionWith(config, tpm, writeKey, options);
  } finally {
    await writeKey.close();
  }
}

async function provisionWith(
  config: AppConfig,
  tpm: TpmPort,
  writeKey: AnchorWriteKey,
  options: { afterStep?: (step: ProvisionStep) => Promise<void> | void },
): Promise<string[]> {
  const done: string[] = [];
  const file = config.audit.pinFile;
  let pin = await readPin(config);
  if (pin === undefined) {
    const indices = {
      counterIndex: config.audit.nvCounterIndex,
      extendIndex: config.audit.nvExtendIndex,
    };
    const ownerFile = config.tpm.ownerAuthFile;
    const anchored = await provisionTpmAnchor(tpm, indices, {
      writeKey,
      ...(ownerFile === undefined ? {} : { ownerAuth: await readOwnerAuth(ownerFile) }),
      ...(options.afterStep === undefined ? {} : { afterStep: options.afterStep }),
    });
    // The AK that certifies every start-up read of the anchor, pinned with it.
    const akPublic = await new TpmAuditAnchor(tpm, anchorConfig(config)).akPublic();
    if (akPublic === undefined) throw new TpmUnavailableError('no AK for the anchor');
    pin = { ...indices, ...anchored, akPublic };
    await writeAnchorPin(file, pin);
    await options.afterStep?.('write_pin');
    done.push(
      `audit anchor: NV indices 0x${indices.counterIndex.toString(16)} (counter, name ${pin.names.counter}) and 0x${indices.extendIndex.toString(16)} (extend, name ${pin.names.extend}), written only with the key store's anchor write key (name ${anchored.writeKey?.name ?? '?'}), genesis counter ${pin.genesisCounter}, pinned in ${file} (operator configuration: keep it outside the state folder, read-only)`,
    );
  } else {
    done.push(`audit anchor: pinned in ${file} (genesis counter ${pin.genesisCounter})`);
  }
  const db = await openDatabase(join(config.stateDir, 'db'));
  try {
    const created = await provisionAuditStore(
      { origin: config.applianceId },
      { db, anchor: new TpmAuditAnchor(tpm, anchorConfig(config, pin, writeKey)) },
    );
    if (created) await options.afterStep?.('create_store');
    done.push(created ? 'audit log: created' : 'audit log: exists');
  } finally {
    await db.close();
  }
  return done;
}

export interface StartOptions {
  readonly logger?: FastifyBaseLogger;
  readonly now?: () => number;
  /**
   * The operator CA (PEM) whose client certificates log operators in; the HTTP layer reads
   * it from config.tls.operatorCaFile (tlsOptions/operatorCaPem in src/http/plugins/tls.ts).
   * None: certificates are refused and operators log in with tokens only.
   */
  readonly operatorCaPem?: string;
  /** The registry to count into (default: a new one, exposed as `Appliance.metrics`). */
  readonly metrics?: GrantorMetrics;
}

export async function openAppliance(
  config: AppConfig,
  options: StartOptions = {},
): Promise<Appliance> {
  const logger = options.logger;
  // The one clock shape every domain takes (src/shared/clock.ts): epoch milliseconds.
  const now = options.now === undefined ? {} : { now: options.now };
  const metrics = options.metrics ?? createMetrics();
  // Every TPM command of the appliance (audit anchor, NV_Certify, readiness) is timed.
  const tpm: TpmPort = new MeteredTpm(await openTpm(config.tpm), metrics);
  const closers: (() => Promise<void>)[] = [() => tpm.close()];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const db = await openDatabase(join(config.stateDir, 'db'));
    closers.push(() => db.close());

    // The checkpoint key lives in the keys service, created below; the log only needs it
    // when it signs a checkpoint.
    const keysRef: { current?: KeyService } = {};
    const keysNow = (): KeyService => {
      if (keysRef.current === undefined)
        throw new HsmUnavailableError('the keys service is not started');
      return keysRef.current;
    };
    const pin = await readPin(config);
    // Found, never created, here: a missing key is refused (anchor_key_missing).
    const writeKey = anchorWriteKey(config, { signThread: true });
    closers.push(() => writeKey.close());
    // The key store answers first: a refused PIN or a missing token is the HSM's failure,
    // named as such; a missing or foreign key is the audit start-up's refusal (lockdown).
    await writeKey.publicPoint().catch((e: unknown) => {
      if (!(e instanceof AnchorKeyError)) throw e;
    });
    const meteredAudit = meterAudit(metrics);
    const audit = createAudit(
      {
        origin: config.applianceId,
        minAnchorIntervalMs: config.audit.minAnchorIntervalMs,
        ...(config.audit.periodHours === undefined
          ? {}
          : { periodHours: config.audit.periodHours }),
      },
      {
        db,
        anchor: meteredAudit.anchor(new TpmAuditAnchor(tpm, anchorConfig(config, pin, writeKey))),
        decorateStore: meteredAudit.store,
        signer: {
          keyName: config.applianceId,
          get publicKey() {
            return keysNow().auditPublicKey().raw;
          },
          sign: async (message) => (await keysNow().signAudit(message)).signature,
        },
        ...now,
        ...(logger === undefined ? {} : { logger }),
        // Retention (docs/audit.md "Retention"): bundles beside the database, checked
        // against the anchor pin as an auditor would.
        retention: {
          dir: join(config.stateDir, 'audit-retired'),
          ...(pin === undefined
            ? {}
            : {
                pin: {
                  names: pin.names,
                  genesisCounter: pin.genesisCounter,
                  akPublic: pin.akPublic,
                },
              }),
        },
      },
    );
    closers.push(() => audit.close());
    let lockdown: GrantorError | undefined;
    try {
      await audit.ready();
    } catch (e) {
      if (
        e instanceof GrantorError &&
        (e.code === 'audit_rollback_detected' || e.code === 'audit_not_provisioned')
      ) {
        lockdown = e;
        logger?.fatal(
          { code: e.code, reason: e.message },
          'audit log refused at start: serving 503 to every request until an operator acts',
        );
      } else {
        throw e;
      }
    }

    const keys = await createKeys(
      {
        modulePath: config.hsm.module,
        tokenLabel: config.hsm.tokenLabel,
        pin: config.hsm.pin,
        rotationPeriodSeconds: config.keys.rotationPeriodSeconds,
        grantMaxTtlSeconds: config.keys.grantMaxTtlSeconds,
        signDeadlineMs: config.keys.signDeadlineMs,
        sessionPoolSize: config.keys.sessions,
        signThreads: config.keys.signThreads,
        ...(config.keys.grantBatch.enabled
          ? {
              grantBatch: {
                maxSize: config.keys.grantBatch.maxSize,
                maxWaitMs: config.keys.grantBatch.maxWaitMs,
              },
            }
          : {}),
        ...(config.auditHsm === undefined
          ? {}
          : {
              audit: {
                modulePath: config.auditHsm.module,
                tokenLabel: config.auditHsm.tokenLabel,
                pin: config.auditHsm.pin,
              },
            }),
      },
      {
        db,
        ...(logger === undefined ? {} : { logger }),
        ...now,
        decorateSigner: (signer) => new MeteredSigner(signer, metrics),
        onLifecycle: auditKeyLifecycle(audit),
      },
    );
    keysRef.current = keys;
    metrics.observe({
      auditTreeSize: () => audit.treeSize(),
      grantKey: () => {
        const active = keys.list().find((k) => k.purpose === 'grant' && k.state === 'active');
        if (active === undefined) return undefined;
        const createdAtMs = Date.parse(active.createdAt);
        const period = config.keys.rotationPeriodSeconds;
        return period > 0
          ? { createdAtMs, nextRotationAtMs: createdAtMs + period * 1000 }
          : { createdAtMs };
      },
    });
    closers.push(() => keys.close());

    // Every policy set is archived by its hash before it activates (GET /v1/policy/{hash}).
    const policyArchive = new LevelPolicyArchive(db);
    // Every reload after the first set is logged, counted and audited (src/policy/reloads.ts).
    const { engine: policy, reload: reloadPolicy } = await createAuditedPolicyEngine(
      {
        policyDir: config.policy.dir,
        schemaFile: config.policy.schemaFile,
        watch: config.policy.watch,
        keep: (source) => policyArchive.keep(source),
        ...now,
      },
      { audit, metrics, logger },
    );
    closers.push(() => {
      policy.close();
      return Promise.resolve();
    });
    // Decisions on worker threads (docs/policy.md, "Decisions off the event loop").
    const policyWorkers =
      config.policy.threads === 0
        ? undefined
        : PolicyWorkers.start(policy, {
            threads: config.policy.threads,
            onLoadError: (message) => {
              logger?.error({ event: 'policy_worker_load_failed' }, `policy worker: ${message}`);
            },
            onExit: ({ code, error }) => {
              logger?.warn(
                { event: 'policy_worker_exit', code, err: error },
                'a policy worker stopped; its decisions failed closed and it is being replaced',
              );
            },
          });
    if (policyWorkers !== undefined) {
      closers.push(() => policyWorkers.close());
      // Serve once the workers have started (their code and Cedar loaded), so that the first
      // decisions and the readiness canary do not wait for them; one that cannot start is
      // replaced and, until then, readiness shows `policy` down.
      await policyWorkers.started();
    }

    // A missing file names its key and path (src/startup-cause.ts), not a bare ENOENT.
    const referencePolicyFiles = await expandPaths(
      config.attestation.referencePolicies,
      '.json',
    ).catch((e: unknown) => {
      throw fileConfigError('GRANTOR_REFERENCE_POLICIES', config.attestation.referencePolicies, e);
    });
    const ekCaBundlePem = await readBundle(config.attestation.ekCaBundle).catch((e: unknown) => {
      throw fileConfigError('GRANTOR_EK_CA_BUNDLE', config.attestation.ekCaBundle, e);
    });
    const attestationAudit = {
      record: async (event: AuditEvent) => {
        await audit.append(event);
      },
    };
    const attestationTrust = await AttestationTrust.open({
      configuredEkCaPem: ekCaBundlePem,
      configuredEnrollmentRules: await loadEnrollmentRules(config.attestation.enrollmentRules),
      referencePolicies: await loadReferencePolicies(referencePolicyFiles),
      stateDir: join(config.stateDir, 'attestation'),
      audit: attestationAudit,
    });
    const attestation = await createAttestation(
      {
        ekCaBundlePem,
        referencePolicyFiles,
        trust: attestationTrust,
        pendingEnrollmentTtlSeconds: config.attestation.pendingEnrollmentTtlSeconds,
        measuredBoot: config.attestation,
      },
      {
        db,
        audit: attestationAudit,
        ...now,
      },
    );

    const operators = createOperators(db, {
      approvalPolicy: approvalPolicyFromSettings(config.approvals),
      // Approvals expire on the appliance's clock, like every other domain's deadlines.
      ...now,
      ...(options.operatorCaPem === undefined ? {} : { operatorCaPem: options.operatorCaPem }),
      ...auditOperatorEvents(audit),
    });

    // Grant decisions read the gateways serving an audience from memory (gateways.ts).
    await operators.gateways.load();
    const feed = config.revocationFeed;
    const grants = createGrants(
      {
        issuer: config.applianceId,
        maxTtlSeconds: config.keys.grantMaxTtlSeconds,
        revocationFeed: { maxSubscribers: feed.maxSubscribers, maxWaitMs: feed.maxWaitMs },
        revocationSnapshotTtlSeconds: feed.snapshotTtlSeconds,
      },
      {
        db,
        attestation,
        policy: policyWorkers ?? policy,
        audit,
        keys,
        // Policies see which enrolled gateways hold a grant's audience (issue 18).
        gateways: operators.gateways,
        metrics,
        ...(logger === undefined ? {} : { logger }),
        onUnreleased: (outcome) => {
          if ('error' in outcome) {
            logger?.error(
              { event: 'grants_unreleased_failed' },
              'could not check the audit log for allows a previous run never released; checked again at the next start',
            );
          } else if (outcome.marked > 0) {
            logger?.warn(
              { event: 'grants_unreleased_marked', marked: outcome.marked },
              `marked ${outcome.marked} allow(s) a previous run committed but never released (grant.issue_failed, not_released)`,
            );
          }
        },
      },
    );

    // Trust an operator withdraws takes the sessions and grants that rested on it (issue 18).
    if (config.attestation.trustChangeCascade) {
      const cascade = new TrustCascade({
        attestation,
        grants,
        ...now,
      });
      attestationTrust.onTrustWithdrawn((change) => cascade.apply(change));
    }

    return {
      config,
      grants,
      tpm,
      db,
      audit,
      keys,
      policy,
      decisions: policyWorkers ?? policy,
      reloadPolicy,
      policyArchive,
      attestation,
      operators,
      attestationTrust,
      metrics,
      lockdown,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
