/**
 * The appliance's HTTP server: readiness probes over every dependency and the app over the
 * composed services (src/appliance.ts).
 */
import type { FastifyBaseLogger } from 'fastify';
import { openAppliance, type Appliance } from '../appliance.js';
import type { AppConfig } from '../shared/config.js';
import { ConfigError, GrantorError } from '../shared/errors.js';
import { componentOfCode, describeStartupFailure, type StartupFailure } from '../startup-cause.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import { statusForCode } from './error-status.js';
import { policyReadinessProbe } from '../policy/index.js';
import type { ReadinessProbe } from '../shared/readiness.js';
import { tpmProbe } from '../tpm/probe.js';
import { RefusalAudit } from '../operators/refusals.js';
import { RateLimiter } from './plugins/rate-limit.js';
import { buildApp, type App, type AppOptions } from './app.js';
import { certificateExpiries, tlsOptions } from './plugins/tls.js';
import { createMetrics, type GrantorMetrics } from '../shared/metrics.js';
import type { OperatorAct } from './plugins/auth.js';
import type { OperatorActFacts } from '../audit/index.js';
import { factId, factText } from '../audit/index.js';

export function probes(a: Appliance): ReadinessProbe[] {
  return [
    tpmProbe(a.tpm),
    {
      name: 'hsm',
      code: 'hsm_unavailable',
      check: async () => {
        const r = await a.keys.ready();
        return r.ok ? { ok: true } : { ok: false, reason: r.reason ?? 'HSM not usable' };
      },
    },
    {
      name: 'audit',
      code: a.lockdown?.code ?? 'audit_unavailable',
      check: async () => {
        if (a.lockdown !== undefined)
          return { ok: false, reason: `audit log refused at start: ${a.lockdown.message}` };
        await a.audit.ready();
        return { ok: true };
      },
    },
    policyReadinessProbe(a.policy, a.decisions),
  ];
}

/** Refused operator attempts into the audit log, bounded per window (never the token). */
function refusalAudit(a: Appliance): RefusalAudit {
  return new RefusalAudit({
    windowSeconds: a.config.operatorRefusals.windowSeconds,
    maxEntriesPerWindow: a.config.operatorRefusals.maxEntriesPerWindow,
    write: async (entry) => {
      await a.audit.append({
        type: 'operator.refused',
        subject: entry.identity ?? `address:${entry.address}`,
        decision: entry.code,
        reasons: [
          entry.reason,
          `${entry.method} ${entry.route}`,
          `address:${entry.address}`,
          ...(entry.detail === undefined ? [] : [`tls:${entry.detail}`]),
          ...(entry.person === undefined ? [] : [`person:${entry.person}`]),
          ...(entry.repeats > 0 ? [`repeats:${entry.repeats}`] : []),
          ...(entry.dropped > 0 ? [`dropped:${entry.dropped}`] : []),
        ],
        digest: jcsSha256Hex(entry),
        facts: {
          identity: entry.identity === undefined ? null : factText(entry.identity),
          person: entry.person === undefined ? null : factId(entry.person),
          address: factText(entry.address),
          code: factId(entry.code),
          act: factText(`${entry.method} ${entry.route}`),
          repeats: entry.repeats,
          dropped: entry.dropped,
        },
      });
    },
  });
}

export async function buildApplianceApp(a: Appliance, options: AppOptions = {}): Promise<App> {
  const refusals = refusalAudit(a);
  return buildApp(
    {
      probes: probes(a),
      ...(a.lockdown === undefined ? {} : { lockdown: a.lockdown }),
      operators: a.operators,
      keys: a.keys,
      audit: a.audit,
      attestation: a.attestation,
      attestationTrust: a.attestationTrust,
      grants: a.grants,
      policy: {
        info: () => a.policy.info(),
        reload: (actor) => a.reloadPolicy(actor.id),
        archived: (hash) => a.policyArchive.get(hash),
      },
      metrics: a.metrics,
      rateLimits: a.config.rateLimits.buckets,
      auditExportMaxEntries: a.config.audit.exportMaxEntries,
      rateLimiter: new RateLimiter(a.config.rateLimits.maxKeys),
      revocationFeedSendTimeoutMs: a.config.revocationFeed.sendTimeoutMs,
      onOperatorRefused: (refusal) => refusals.refused(refusal),
      onOperatorAct: async (act) => {
        await a.audit.append({
          type: 'operator.act',
          subject: act.actor.id,
          reasons: [`${act.method} ${act.route}`, `role:${act.actor.role}`],
          digest: jcsSha256Hex(act),
          facts: operatorActFacts(act),
        });
      },
    },
    options,
  );
}

/** The typed facts of an operator act (docs/protocol.md §4): ids from the path, never the body. */
function operatorActFacts(act: OperatorAct): OperatorActFacts {
  const ids = Object.values(act.params).filter(
    (v): v is string => typeof v === 'string' && /^[A-Za-z0-9_.:@/+-]{1,128}$/.test(v),
  );
  const id = /^[A-Za-z0-9_.:@/+-]{1,128}$/;
  return {
    // An id the log cannot hold as one is named by its digest, never refused.
    actor: id.test(act.actor.id) ? act.actor.id : `digest:${jcsSha256Hex(act.actor.id)}`,
    role: act.actor.role,
    act: `${act.method} ${act.route}`,
    target: ids[0] ?? null,
    approvals:
      typeof act.params.approvalId === 'string'
        ? ids.filter((v) => v === act.params.approvalId)
        : [],
  };
}

/** What a failed start leaves for the degraded app. */
export interface DegradedStart {
  /** The failure's cause for people (describeStartupFailure); default: its code alone. */
  readonly startup?: StartupFailure;
  /** The registry start-up already filled (TLS certificates' expiry); default: a new one. */
  readonly metrics?: GrantorMetrics;
}

/**
 * A server for an appliance that could not start because a dependency failed (wrong HSM
 * PIN, TPM unreachable, ...): /healthz answers, /readyz names the component, and every
 * other route fails closed with the start-up error's code. Nothing is retried in a way
 * that could lock the HSM token: an operator fixes the cause and restarts.
 */
export async function buildDegradedApp(
  failure: GrantorError,
  options: AppOptions = {},
  degraded: DegradedStart = {},
): Promise<App> {
  const { startup, metrics } = degraded;
  const component = startup?.component ?? componentOfCode(failure.code);
  // The cause is for the operator reading /readyz: paths, labels and addresses, no secret.
  const reason =
    startup === undefined
      ? `failed at start (${failure.code})`
      : `failed at start (${failure.code}): ${startup.cause}`;
  return buildApp(
    {
      probes: [
        {
          name: component,
          code: startup?.code ?? failure.code,
          check: () => Promise.resolve({ ok: false, reason }),
        },
      ],
      lockdown:
        startup === undefined || startup.code === failure.code
          ? failure
          : new GrantorError(startup.code, startup.cause),
      ...(metrics === undefined ? {} : { metrics }),
    },
    options,
  );
}

export interface RunningServer {
  readonly app: App;
  /** Undefined when the appliance runs degraded (see buildDegradedApp). */
  readonly appliance: Appliance | undefined;
  close(): Promise<void>;
}

/**
 * Opens the appliance and its app, or a degraded app when a dependency fails at start.
 * With config.tls the app is an https server whose listener asks for (but does not
 * require) an operator client certificate; the TLS files are read first, so a bad one is a
 * ConfigError before any hardware is opened.
 */
export async function startApplianceServer(
  config: AppConfig,
  logger?: FastifyBaseLogger,
): Promise<RunningServer> {
  const https = config.tls === undefined ? undefined : tlsOptions(config.tls);
  // The operator CA as the listener read it: the TLS layer and the credential check trust one text.
  const caPem = typeof https?.ca === 'string' ? https.ca : undefined;
  const appOptions: AppOptions = {
    ...(logger === undefined ? {} : { logger }),
    ...(https === undefined ? {} : { https }),
    tlsHandshakeTimeoutMs: config.connections.tlsHandshakeTimeoutMs,
    connections: config.connections,
  };
  // One registry for the appliance or the degraded app, with the TLS certificates' expiry.
  const metrics = createMetrics();
  if (https !== undefined) metrics.observe({ tlsCertificates: certificateExpiries(https) });
  let appliance: Appliance;
  try {
    appliance = await openAppliance(config, {
      metrics,
      ...(logger === undefined ? {} : { logger }),
      ...(caPem === undefined ? {} : { operatorCaPem: caPem }),
    });
  } catch (e) {
    // Hardware and configuration states (a 5xx code, a configuration file, the policy set)
    // degrade the server with their cause; anything else is a bug and stops the process.
    const known =
      e instanceof GrantorError &&
      (e instanceof ConfigError || e.code === 'policy_set_invalid' || statusForCode(e.code) >= 500);
    const startup = known ? await describeStartupFailure(e, config) : undefined;
    if (!(e instanceof GrantorError) || startup === undefined) throw e;
    logger?.fatal(
      { code: startup.code, component: startup.component, cause: startup.cause },
      `a dependency failed at start: ${startup.cause}; serving 503 until an operator fixes it and restarts`,
    );
    const app = await buildDegradedApp(e, appOptions, { startup, metrics });
    return { app, appliance: undefined, close: () => app.close() };
  }
  let app: App;
  try {
    app = await buildApplianceApp(appliance, appOptions);
  } catch (e) {
    await appliance.close();
    throw e;
  }
  return {
    app,
    appliance,
    close: async () => {
      await app.close();
      await appliance.close();
    },
  };
}
