/**
 * The appliance's Prometheus metrics: one prom-client Registry per app (never the global
 * one, so tests and several apps in one process do not collide), and typed handles the
 * domains call. Label values are codes from a fixed set (error codes, TPM command names);
 * anything else is folded into `other` so a caller cannot blow up the series count.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BUILD } from './build.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** A label value from a bounded vocabulary: codes and names only. */
export function labelValue(value: string): string {
  return /^[A-Za-z0-9_.:-]{1,64}$/.test(value) ? value : 'other';
}

export interface GrantorMetrics {
  readonly registry: Registry;
  /** Grants issued, by proof mode (`session` | `quote`). */
  readonly grantsIssued: Counter<'mode'>;
  /** Grant requests refused, by error code (`policy_denied`, `nonce_reused`, ...). */
  readonly grantsDenied: Counter<'reason'>;
  /**
   * Attestation verdicts: `trusted` | `untrusted` (an authentic, fresh quote; reason: the
   * first reason code, `ok` when there is none) or `rejected` (the quote or request was
   * refused before a verdict; reason: the error code).
   */
  readonly attestationVerdicts: Counter<'verdict' | 'reason'>;
  /** Time from grant request to answer, by outcome (`issued` | `denied` | `error`). */
  readonly decisionSeconds: Histogram<'outcome'>;
  /** HSM calls (`open`, `generate`, `load`, `sign`, `destroy`, `ready`), failed ones too. */
  readonly hsmCallSeconds: Histogram<'op'>;
  /** Failed HSM calls, by operation and error code (`hsm_unavailable`, ...). */
  readonly hsmErrors: Counter<'op' | 'code'>;
  /** TPM commands (TPM 2.0 names: `NV_Extend`, `Quote`, ...), queueing included. */
  readonly tpmCallSeconds: Histogram<'command'>;
  /** Failed TPM commands, by command and code (`tpm_unavailable`, `tpm_rc_0x08b`, ...). */
  readonly tpmErrors: Counter<'command' | 'code'>;
  /** Entries per committed (stored and anchored) audit batch. */
  readonly auditBatchSize: Histogram;
  /** NV writes to the anchor indices (`extend` | `counter`). */
  readonly nvWrites: Counter<'index'>;
  /** Audit entries durable in the store but not yet anchored in the TPM. */
  readonly anchorLagEntries: Gauge;
  /** Age of the oldest not yet anchored entry (0 when none), computed at scrape time. */
  readonly anchorLagSeconds: Gauge;
  /**
   * Set both anchor lag gauges: `entries` stored but not anchored, the oldest of them
   * stored at `oldestAtMs` (epoch ms; undefined when there is none).
   */
  setAnchorLag(entries: number, oldestAtMs: number | undefined): void;
  /** HTTP requests by method, route pattern and status code. */
  readonly httpRequestSeconds: Histogram<'method' | 'route' | 'status'>;
  /** Requests refused by the rate limiter, by bucket and scope (`address`, `runtime`, `appliance`). */
  readonly rateLimited: Counter<'bucket' | 'scope'>;
  /** Policy set reloads, by outcome (`applied` | `refused`) and trigger (`operator` | `watch`). */
  readonly policyReloads: Counter<'outcome' | 'trigger'>;
  /** Sweeps of the revocation feed's expired events that failed (the store refused). */
  readonly revocationFeedPruneFailures: Counter;
  /** Feed subscribers dropped because they did not take their answer in time. */
  readonly revocationFeedSubscribersDropped: Counter;
  /** Audit entries owed for revocations and outcomes already applied (src/grants/audit-pending.ts). */
  readonly grantsAuditOwed: Gauge;
  /** Retries of owed audit entries, by outcome (`written` | `failed`). */
  readonly grantsAuditRetries: Counter<'outcome'>;
  /**
   * Where the scrape-time gauges read their values (readiness, audit tree size, grant key
   * age and next rotation, TLS certificate expiry); each source is optional and later calls
   * add to or replace earlier ones.
   */
  observe(sources: MetricSources): void;
  /**
   * grantor_ready{component}: true when usable. Set from what start-up found and from every
   * /readyz run, never probed by a scrape (a scrape must not send TPM or HSM commands).
   */
  setReadiness(report: Readonly<Record<string, boolean>>): void;
  /**
   * Give every labelled counter a zero series for every label value it can take, so a
   * `rate()` or `increase()` sees the first event (a series born at 1 has no rate).
   */
  startAtZero(vocabulary: MetricVocabulary): void;
}

/** What the scrape-time gauges read (see GrantorMetrics.observe). */
export interface MetricSources {
  /** Entries in the audit log's tree (undefined while the log is not serving). */
  readonly auditTreeSize?: () => number | undefined;
  /**
   * The active grant key: when it was created and when scheduled rotation replaces it
   * (epoch ms; `nextRotationAtMs` undefined when scheduled rotation is off).
   */
  readonly grantKey?: () => { createdAtMs: number; nextRotationAtMs?: number } | undefined;
  /** TLS certificates the listener presents or trusts, by name, with their notAfter (epoch ms). */
  readonly tlsCertificates?: Readonly<Record<string, number>>;
}

/** The label values of the counters that depend on other domains' vocabularies. */
export interface MetricVocabulary {
  /** Error codes a caller can be refused with (4xx): grant denials, attestation rejections. */
  readonly refusalCodes: readonly string[];
  /** Reason codes of an `untrusted` attestation verdict. */
  readonly verdictReasons: readonly string[];
  /** Rate limit buckets. */
  readonly rateLimitBuckets: readonly string[];
}

/** The HSM operations of the metered signer (src/keys/signer.metered.ts). */
export const HSM_OPERATIONS = ['open', 'generate', 'load', 'sign', 'destroy', 'ready'] as const;
/** The HSM error codes (src/keys/errors.ts). */
export const HSM_ERROR_CODES = [
  'hsm_unavailable',
  'hsm_pin_incorrect',
  'hsm_pin_locked',
  'hsm_key_unsafe',
  'hsm_key_missing',
] as const;
/** The TPM commands the appliance itself sends (anchoring, checkpoints, readiness). */
export const APPLIANCE_TPM_COMMANDS = [
  'NV_Extend.NV_Increment',
  'NV_Extend',
  'NV_Increment',
  'NV_Read',
  'NV_ReadPublic',
  'NV_Certify',
  'CreatePrimary',
  'FlushContext',
  'GetRandom',
] as const;
/** Components of grantor_ready (the readiness probes). */
export const READY_COMPONENTS = ['tpm', 'hsm', 'audit', 'policy'] as const;
const RATE_LIMIT_SCOPES = ['address', 'runtime', 'appliance'] as const;

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop lag, GC). Default true. */
  readonly defaultMetrics?: boolean;
  readonly prefix?: string;
  /** The clock of anchor_lag_seconds (epoch ms); default Date.now. */
  readonly now?: () => number;
}

export function createMetrics(options: MetricsOptions = {}): GrantorMetrics {
  const registry = new Registry();
  const p = options.prefix ?? 'grantor_';
  const registers = [registry];
  const now = options.now ?? Date.now;
  let lagSince: number | undefined;
  let sources: MetricSources = {};
  if (options.defaultMetrics ?? true) defaultMetrics(registry, p);
  new Gauge({
    name: `${p}build_info`,
    help: 'The running build: always 1, labelled with its version and Node.js version',
    labelNames: ['version', 'node'] as const,
    registers,
  }).set({ version: BUILD.version, node: BUILD.node }, 1);
  const ready = new Gauge({
    name: `${p}ready`,
    help: 'Readiness by component (1 usable, 0 not), as found at start and by the last /readyz',
    labelNames: ['component'] as const,
    registers,
  });
  new Gauge({
    name: `${p}audit_tree_size`,
    help: 'Entries in the audit log (its Merkle tree size)',
    registers,
    collect() {
      const size = sources.auditTreeSize?.();
      if (size !== undefined) this.set(size);
    },
  });
  new Gauge({
    name: `${p}grant_key_age_seconds`,
    help: 'Age of the active grant signing key',
    registers,
    collect() {
      const key = sources.grantKey?.();
      if (key !== undefined) this.set(Math.max(0, (now() - key.createdAtMs) / 1000));
    },
  });
  new Gauge({
    name: `${p}grant_key_next_rotation_timestamp_seconds`,
    help: 'When scheduled rotation replaces the active grant key (epoch seconds; absent when off)',
    registers,
    collect() {
      const next = sources.grantKey?.()?.nextRotationAtMs;
      this.reset();
      if (next !== undefined) this.set(next / 1000);
    },
  });
  new Gauge({
    name: `${p}tls_certificate_expiry_timestamp_seconds`,
    help: 'notAfter of the TLS certificates the listener presents or trusts (epoch seconds)',
    labelNames: ['certificate'] as const,
    registers,
    collect() {
      this.reset();
      for (const [name, notAfterMs] of Object.entries(sources.tlsCertificates ?? {})) {
        this.set({ certificate: labelValue(name) }, notAfterMs / 1000);
      }
    },
  });
  const anchorLagEntries = new Gauge({
    name: `${p}anchor_lag_entries`,
    help: 'Audit entries stored but not yet anchored in the TPM',
    registers,
  });
  const anchorLagSeconds = new Gauge({
    name: `${p}anchor_lag_seconds`,
    help: 'Age of the oldest audit entry not yet anchored in the TPM',
    registers,
    // At scrape time: a batch stuck behind a TPM outage ages even when nothing is appended.
    collect() {
      this.set(lagSince === undefined ? 0 : Math.max(0, (now() - lagSince) / 1000));
    },
  });
  const m: GrantorMetrics = {
    registry,
    grantsIssued: new Counter({
      name: `${p}grants_issued_total`,
      help: 'Grants issued, by proof mode',
      labelNames: ['mode'] as const,
      registers,
    }),
    grantsDenied: new Counter({
      name: `${p}grants_denied_total`,
      help: 'Grant requests refused, by reason code',
      labelNames: ['reason'] as const,
      registers,
    }),
    attestationVerdicts: new Counter({
      name: `${p}attestation_verdicts_total`,
      help: 'Attestation verdicts, by verdict and reason code',
      labelNames: ['verdict', 'reason'] as const,
      registers,
    }),
    decisionSeconds: new Histogram({
      name: `${p}decision_duration_seconds`,
      help: 'Grant decision latency, by outcome',
      labelNames: ['outcome'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    hsmCallSeconds: new Histogram({
      name: `${p}hsm_call_duration_seconds`,
      help: 'HSM call latency, by operation',
      labelNames: ['op'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    hsmErrors: new Counter({
      name: `${p}hsm_errors_total`,
      help: 'HSM call failures, by operation and error code',
      labelNames: ['op', 'code'] as const,
      registers,
    }),
    tpmCallSeconds: new Histogram({
      name: `${p}tpm_call_duration_seconds`,
      help: 'TPM command latency, by command',
      labelNames: ['command'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    tpmErrors: new Counter({
      name: `${p}tpm_errors_total`,
      help: 'TPM command failures, by command and error code',
      labelNames: ['command', 'code'] as const,
      registers,
    }),
    auditBatchSize: new Histogram({
      name: `${p}audit_batch_size`,
      help: 'Entries per committed audit batch',
      buckets: BATCH_BUCKETS,
      registers,
    }),
    nvWrites: new Counter({
      name: `${p}nv_writes_total`,
      help: 'NV writes to the audit anchor indices',
      labelNames: ['index'] as const,
      registers,
    }),
    anchorLagEntries,
    anchorLagSeconds,
    setAnchorLag(entries, oldestAtMs) {
      anchorLagEntries.set(entries);
      lagSince = entries > 0 ? oldestAtMs : undefined;
    },
    httpRequestSeconds: new Histogram({
      name: `${p}http_request_duration_seconds`,
      help: 'HTTP request latency, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    rateLimited: new Counter({
      name: `${p}rate_limited_total`,
      help: 'Requests refused by the rate limiter',
      labelNames: ['bucket', 'scope'] as const,
      registers,
    }),
    policyReloads: new Counter({
      name: `${p}policy_reloads_total`,
      help: 'Policy set reloads, by outcome and trigger',
      labelNames: ['outcome', 'trigger'] as const,
      registers,
    }),
    grantsAuditOwed: new Gauge({
      name: `${p}grants_audit_owed`,
      help: 'Audit entries owed for revocations and outcomes already applied',
      registers,
    }),
    grantsAuditRetries: new Counter({
      name: `${p}grants_audit_retries_total`,
      help: 'Retries of owed audit entries, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    }),
    revocationFeedPruneFailures: new Counter({
      name: `${p}revocation_feed_prune_failures_total`,
      help: 'Sweeps of expired revocation feed events that failed',
      registers,
    }),
    revocationFeedSubscribersDropped: new Counter({
      name: `${p}revocation_feed_subscribers_dropped_total`,
      help: 'Revocation feed subscribers dropped for not taking their answer in time',
      registers,
    }),
    observe(more: MetricSources) {
      sources = { ...sources, ...more };
    },
    setReadiness(report) {
      for (const [component, ok] of Object.entries(report)) {
        ready.set({ component: labelValue(component) }, ok ? 1 : 0);
      }
    },
    startAtZero(vocabulary: MetricVocabulary) {
      // Counters only: inc(0) never resets a series already counted.
      for (const code of vocabulary.refusalCodes) {
        m.grantsDenied.inc({ reason: labelValue(code) }, 0);
        m.attestationVerdicts.inc({ verdict: 'rejected', reason: labelValue(code) }, 0);
      }
      for (const reason of vocabulary.verdictReasons) {
        m.attestationVerdicts.inc({ verdict: 'untrusted', reason: labelValue(reason) }, 0);
      }
      for (const bucket of vocabulary.rateLimitBuckets) {
        for (const scope of RATE_LIMIT_SCOPES) {
          m.rateLimited.inc({ bucket: labelValue(bucket), scope }, 0);
        }
      }
    },
  };
  zeroOwnVocabulary(m);
  return m;
}

/** At creation, before anything is observed: the label values this module knows. */
function zeroOwnVocabulary(m: GrantorMetrics): void {
  for (const mode of ['session', 'quote']) m.grantsIssued.inc({ mode }, 0);
  m.attestationVerdicts.inc({ verdict: 'trusted', reason: 'ok' }, 0);
  for (const outcome of ['issued', 'denied', 'error']) m.decisionSeconds.zero({ outcome });
  for (const op of HSM_OPERATIONS) {
    m.hsmCallSeconds.zero({ op });
    for (const code of HSM_ERROR_CODES) m.hsmErrors.inc({ op, code }, 0);
  }
  m.hsmErrors.inc({ op: 'ready', code: 'hsm_not_ready' }, 0);
  for (const command of APPLIANCE_TPM_COMMANDS) {
    m.tpmCallSeconds.zero({ command });
    for (const code of ['tpm_unavailable', 'tpm_error']) m.tpmErrors.inc({ command, code }, 0);
  }
  for (const index of ['extend', 'counter']) m.nvWrites.inc({ index }, 0);
  for (const outcome of ['applied', 'refused']) {
    for (const trigger of ['operator', 'watch']) m.policyReloads.inc({ outcome, trigger }, 0);
  }
  for (const outcome of ['written', 'failed']) m.grantsAuditRetries.inc({ outcome }, 0);
}

/**
 * prom-client's process metrics, except its three `nodejs_active_*_total`: gauges named
 * like counters, which `promtool check metrics` refuses. prom-client exposes the same
 * values without the suffix (`nodejs_active_handles`, `_requests`, `_resources`).
 */
const MISNAMED_DEFAULTS = [
  'active_handles_total',
  'active_requests_total',
  'active_resources_total',
];

function defaultMetrics(registry: Registry, p: string): void {
  collectDefaultMetrics({ register: registry, prefix: p });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(`${p}nodejs_${name}`);
}

/** The `code` of an error (GrantorError and the native adapters' errors), else `unknown`. */
export function errorCode(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string'
    ? e.code
    : 'unknown';
}

/**
 * Time one hardware call: observe its latency, and count a failure by `codeOf(error)`
 * (default: the error's `code`, `unknown` without one). The error is rethrown unchanged.
 */
export async function timeCall<T, L extends string>(
  latency: Histogram<L>,
  errors: Counter<L | 'code'>,
  labels: Readonly<Record<L, string>>,
  fn: () => Promise<T>,
  codeOf: (e: unknown) => string = errorCode,
): Promise<T> {
  const safe = Object.fromEntries(
    Object.entries<string>(labels).map(([k, v]) => [k, labelValue(v)]),
  ) as Record<L, string>;
  const end = latency.startTimer(safe);
  try {
    return await fn();
  } catch (e) {
    errors.inc({ ...safe, code: labelValue(codeOf(e)) } as Partial<
      Record<L | 'code', string | number>
    >);
    throw e;
  } finally {
    end();
  }
}

/** timeCall with its series and label name fixed: `time(value, fn)` times `fn` as label=value. */
export type CallTimer = <T>(value: string, fn: () => Promise<T>) => Promise<T>;

/** A CallTimer for one hardware port's calls (e.g. the TPM's by `command`, the HSM's by `op`). */
export function callTimer<L extends string>(
  latency: Histogram<L>,
  errors: Counter<L | 'code'>,
  label: L,
  codeOf?: (e: unknown) => string,
): CallTimer {
  return (value, fn) =>
    timeCall(latency, errors, { [label]: value } as Record<L, string>, fn, codeOf);
}
