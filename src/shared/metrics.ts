/**
 * The appliance's Prometheus metrics: one prom-client Registry per app (never the global
 * one, so tests and several apps in one process do not collide), and typed handles the
 * domains call. Label values are codes from a fixed set (error codes, TPM command names);
 * anything else is folded into `other` so a caller cannot blow up the series count.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
}

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
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: p });
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
  return {
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
  };
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
