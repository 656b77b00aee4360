/**
 * The composition root: builds every domain from the configuration with plain constructor
 * arguments, in dependency order, and the HTTP app over them. Used by main.ts (the
 * server), cli.ts (provisioning and ceremonies) and the end-to-end tests.
 *
 * Order: TPM -> database -> audit (its checkpoint key is resolved lazily from the keys
 * service, so the log can open first) -> keys (lifecycle events are audited) -> policy ->
 * attestation -> operators -> HTTP.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import {
  createAudit,
  fitReason,
  expectedAnchorNames,
  provisionTpmAnchor,
  TpmAuditAnchor,
  type AuditService,
} from './audit/index.js';
import { meterAudit } from './audit/audit.metered.js';
import {
  AttestationTrust,
  createAttestation,
  loadReferencePolicies,
  type AttestationService,
} from './attestation/index.js';
import { createGrants, type GrantService } from './grants/index.js';
import { createKeys, type KeyService } from './keys/index.js';
import { MeteredSigner } from './keys/signer.metered.js';
import { approvalPolicyFromSettings, createOperators, type Operators } from './operators/index.js';
import {
  PolicySetInvalidError,
  PolicyWorkers,
  createPolicyEngine,
  type PolicyDecider,
  type PolicyEngine,
  type PolicySetInfo,
} from './policy/index.js';
import type { AppConfig } from './shared/config.js';
import { openDatabase, type Database } from './shared/db.level.js';
import { GrantorError } from './shared/errors.js';
import { jcsSha256Hex } from './shared/jcs.js';
import { createMetrics, type GrantorMetrics } from './shared/metrics.js';
import { marshalTpmtPublic } from './tpm/marshal/public.js';
import { AK_TEMPLATE_ECC_P256 } from './tpm/templates.js';
import { TPM_RC, TpmError } from './tpm/tpm-error.js';
import { MeteredTpm } from './tpm/tpm.metered.js';
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

/** An error message as one audit reason (see fitReason). */
function auditReason(message: string): string {
  return message.length === 0 ? 'refused' : fitReason(message);
}

async function readBundle(paths: readonly string[]): Promise<string> {
  const files = await expandPaths(paths, '.pem');
  const pems = await Promise.all(files.map((f) => readFile(f, 'utf8')));
  return pems.join('\n');
}

function anchorConfig(config: AppConfig) {
  const indices = {
    counterIndex: config.audit.nvCounterIndex,
    extendIndex: config.audit.nvExtendIndex,
  };
  return {
    ...indices,
    pinnedNames: config.audit.pinnedNames ?? expectedAnchorNames(indices),
    // NV_Certify (checkpoint ?nonce=) is signed by a restricted P-256 AK derived as an
    // endorsement-hierarchy primary from this template (the same key every time).
    akTemplate: marshalTpmtPublic(AK_TEMPLATE_ECC_P256),
  };
}

/**
 * Provisioning (idempotent): defines the audit anchor NV indices when they do not exist.
 * Keys are created by the keys service on first start. Returns what it did, for the CLI.
 */
export async function provisionAppliance(config: AppConfig, tpm: TpmPort): Promise<string[]> {
  const done: string[] = [];
  const a = anchorConfig(config);
  const exists = async (index: number): Promise<boolean> =>
    tpm.nvReadPublic(index).then(
      () => true,
      (e: unknown) => {
        // Only "no such handle" means absent; any other TPM error stops provisioning.
        if (e instanceof TpmError && e.is(TPM_RC.HANDLE)) return false;
        throw e;
      },
    );
  const [counter, extend] = await Promise.all([exists(a.counterIndex), exists(a.extendIndex)]);
  if (!counter && !extend) {
    const names = await provisionTpmAnchor(tpm, a);
    done.push(
      `defined audit anchor NV indices 0x${a.counterIndex.toString(16)} (counter, name ${names.counter}) and 0x${a.extendIndex.toString(16)} (extend, name ${names.extend})`,
    );
  } else if (counter !== extend) {
    throw new GrantorError(
      'audit_rollback_detected',
      'only one of the two audit anchor NV indices exists: the TPM was tampered with or half provisioned; an operator must act',
    );
  } else {
    done.push('audit anchor NV indices already defined');
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
        throw new GrantorError('hsm_unavailable', 'the keys service is not started');
      return keysRef.current;
    };
    const meteredAudit = meterAudit(metrics);
    const audit = createAudit(
      { origin: config.applianceId, minAnchorIntervalMs: config.audit.minAnchorIntervalMs },
      {
        db,
        anchor: meteredAudit.anchor(new TpmAuditAnchor(tpm, anchorConfig(config))),
        decorateStore: meteredAudit.store,
        signer: {
          keyName: config.applianceId,
          get publicKey() {
            return keysNow().auditPublicKey().raw;
          },
          sign: async (message) => (await keysNow().signAudit(message)).signature,
        },
        ...(options.now === undefined ? {} : { now: options.now }),
        ...(logger === undefined ? {} : { logger }),
      },
    );
    closers.push(() => audit.close());
    let lockdown: GrantorError | undefined;
    try {
      await audit.ready();
    } catch (e) {
      if (e instanceof GrantorError && e.code === 'audit_rollback_detected') {
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
      },
      {
        db,
        ...(logger === undefined ? {} : { logger }),
        ...(options.now === undefined ? {} : { now: options.now }),
        decorateSigner: (signer) => new MeteredSigner(signer, metrics),
        onLifecycle: async (event) => {
          await audit.append({
            type: `key.${event.type.replace(/^key_/, '')}`,
            subject: event.kid,
            reasons: [event.reason],
            digest: jcsSha256Hex(event),
          });
        },
      },
    );
    keysRef.current = keys;
    closers.push(() => keys.close());

    // Every reload after the first set is logged and audited, whoever asked: an operator
    // (reloadPolicy) or the file watch. The engine calls onReload inside the reload it runs,
    // and the reload's promise chain carries its caller's AsyncLocalStorage context, so an
    // operator's reload is told apart from a watched one without a shared flag to race on.
    const policyReloader = new AsyncLocalStorage<{ by: string; audited?: Promise<unknown> }>();
    let activePolicy: PolicySetInfo | undefined;
    const auditPolicyRefused = (error: PolicySetInvalidError, by: string) => {
      logger?.error(
        { event: 'policy_reload_refused', code: error.code, by, active: activePolicy?.hash },
        `policy set refused, the previous one stays active: ${error.message}`,
      );
      return audit.append({
        type: 'policy.reload_refused',
        subject: activePolicy?.hash ?? 'none',
        decision: error.code,
        reasons: [`by:${by}`, auditReason(error.message)],
        digest: jcsSha256Hex({ error: error.code, message: error.message, by }),
      });
    };
    const policy = await createPolicyEngine({
      policyDir: config.policy.dir,
      schemaFile: config.policy.schemaFile,
      watch: config.policy.watch,
      ...(options.now === undefined ? {} : { now: options.now }),
      onReload: (info) => {
        activePolicy = info;
        if (info.version === 1) return; // the set loaded at start, not a reload
        const asked = policyReloader.getStore();
        const by = asked?.by ?? 'watch';
        logger?.info(
          { event: 'policy_reloaded', hash: info.hash, version: info.version, by },
          'policy set activated',
        );
        const appended = audit.append({
          type: 'policy.reloaded',
          subject: info.hash,
          reasons: [`version:${info.version}`, `by:${by}`],
          digest: jcsSha256Hex(info),
        });
        // An operator's reload awaits its entry (and fails with it); a watched one logs.
        if (asked !== undefined) asked.audited = appended;
        appended.catch((e: unknown) => {
          logger?.error({ err: e, event: 'policy_reload_unaudited', by }, 'audit append failed');
        });
      },
      onReloadError: (error) => {
        auditPolicyRefused(error, 'watch').catch((e: unknown) => {
          logger?.error({ err: e, event: 'policy_reload_unaudited' }, 'audit append failed');
        });
      },
    });
    const reloadPolicy = async (by: string): Promise<PolicySetInfo> => {
      const asked: { by: string; audited?: Promise<unknown> } = { by };
      let info: PolicySetInfo;
      try {
        info = await policyReloader.run(asked, () => policy.reload());
      } catch (e) {
        if (e instanceof PolicySetInvalidError) await auditPolicyRefused(e, by);
        throw e;
      }
      await asked.audited;
      return info;
    };
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
    if (policyWorkers !== undefined) closers.push(() => policyWorkers.close());

    const referencePolicyFiles = await expandPaths(config.attestation.referencePolicies, '.json');
    const ekCaBundlePem = await readBundle(config.attestation.ekCaBundle);
    const attestationTrust = await AttestationTrust.open({
      configuredEkCaPem: ekCaBundlePem,
      referencePolicies: await loadReferencePolicies(referencePolicyFiles),
      stateDir: join(config.stateDir, 'attestation'),
      audit: {
        record: async (event) => {
          await audit.append(event);
        },
      },
    });
    const attestation = await createAttestation(
      {
        ekCaBundlePem,
        referencePolicyFiles,
        trust: attestationTrust,
        measuredBoot: config.attestation,
      },
      {
        db,
        audit: {
          record: async (event) => {
            await audit.append(event);
          },
        },
        ...(options.now === undefined ? {} : { now: () => new Date((options.now ?? Date.now)()) }),
      },
    );

    const operators = createOperators(db, {
      approvalPolicy: approvalPolicyFromSettings(config.approvals),
      // Approvals expire on the appliance's clock, like every other domain's deadlines.
      ...(options.now === undefined ? {} : { clock: () => new Date((options.now ?? Date.now)()) }),
      ...(options.operatorCaPem === undefined ? {} : { operatorCaPem: options.operatorCaPem }),
      onApprovalEvent: async (event) => {
        await audit.append({
          type: event.type,
          subject: event.approvalId,
          reasons: [event.act, ...event.actors.map((a) => `${a.role}:${a.id}`)],
          digest: jcsSha256Hex(event),
        });
      },
    });

    const grants = createGrants(
      { issuer: config.applianceId, maxTtlSeconds: config.keys.grantMaxTtlSeconds },
      {
        db,
        attestation,
        policy: policyWorkers ?? policy,
        audit,
        keys,
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
