/**
 * The appliance's configuration: one typed, validated object, read from the environment
 * (GRANTOR_*), optionally layered over a JSON file named by GRANTOR_CONFIG. A bad value
 * fails with a ConfigError naming the key; secrets (the HSM PIN) are resolved here and
 * never printed (see `redactedConfig`).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

/** TLS on the listener (see src/http/plugins/tls.ts). */
export interface TlsSettings {
  /** PEM certificate (chain) of the listener (GRANTOR_TLS_CERT). */
  readonly certFile: string;
  /** PEM private key of the listener (GRANTOR_TLS_KEY). */
  readonly keyFile: string;
  /** PEM operator CA (GRANTOR_OPERATOR_CA); without it, operators log in with tokens only. */
  readonly operatorCaFile?: string;
}

export interface TpmConfig {
  /** tpm2-tss TCTI: `swtpm:host=H,port=P` (simulator) or `device:/dev/tpmrm0`. */
  readonly tcti: string;
  /**
   * The owner hierarchy's authorisation (GRANTOR_TPM_OWNER_AUTH_FILE, hex, mode 0400;
   * src/tpm/owner-auth.ts): read by provisioning only. Absent: empty owner auth.
   */
  readonly ownerAuthFile?: string;
}

export interface HsmConfig {
  readonly module: string;
  readonly tokenLabel: string;
  /** Resolved from GRANTOR_HSM_PIN_FILE or GRANTOR_HSM_PIN. Never log it. */
  readonly pin: string;
  /** Where the PIN came from, for messages ("file /x" or "environment"). */
  readonly pinSource: string;
}

export interface AuditSettings {
  /** NV index handles of the anchor (TPM_NT_COUNTER and TPM_NT_EXTEND). */
  readonly nvCounterIndex: number;
  readonly nvExtendIndex: number;
  /** Pinned NV names (hex); by default the names our attribute choice gives these indices. */
  readonly pinnedNames: { readonly counter: string; readonly extend: string } | undefined;
  /** Least time between two anchors (NV write pairs); default 1000 ms (NV wear). */
  readonly minAnchorIntervalMs: number;
  /**
   * Length of a log period in hours (GRANTOR_AUDIT_PERIOD_HOURS, docs/audit.md "Log
   * periods"); absent (0): a new period only on an operator's demand.
   */
  readonly periodHours?: number;
  /**
   * The anchor pin file (NV names and genesis counter) that `grantor provision` writes and
   * every start reads (src/audit/anchor-pin.ts); operator configuration, kept outside the
   * state folder. Default: `<state dir>.anchor-pin.json`, beside the state folder.
   */
  readonly pinFile: string;
  /**
   * Most entries one evidence bundle covers (GET /v1/audit/export and the local `grantor
   * audit export`); a larger range is 422 audit_export_range_too_large. Default 100,000.
   */
  readonly exportMaxEntries: number;
}

export interface AppConfig {
  readonly applianceId: string;
  readonly listen: ListenConfig;
  /** Absent: plain HTTP, allowed only on a loopback listen host. */
  readonly tls?: TlsSettings;
  readonly stateDir: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  readonly tpm: TpmConfig;
  readonly hsm: HsmConfig;
  /**
   * The audit checkpoint key's token when it is not `hsm`'s (GRANTOR_AUDIT_PKCS11_MODULE):
   * required when `hsm` is the TPM (tpm2-pkcs11), which has no Ed25519.
   */
  readonly auditHsm?: HsmConfig;
  readonly audit: AuditSettings;
  readonly keys: {
    readonly rotationPeriodSeconds: number;
    readonly grantMaxTtlSeconds: number;
    readonly signDeadlineMs: number;
    /** PKCS#11 sessions signing in parallel. */
    readonly sessions: number;
    /** Threads signing batches on those sessions (at most `sessions`). */
    readonly signThreads: number;
    /**
     * Batch-signed grants (GRANTOR_GRANT_BATCH=on; docs/protocol.md §3): one signature over
     * the Merkle root of up to `maxSize` grants, a batch closing after at most `maxWaitMs`.
     */
    readonly grantBatch: {
      readonly enabled: boolean;
      readonly maxSize: number;
      readonly maxWaitMs: number;
    };
  };
  readonly attestation: {
    /** PEM files or folders of PEM files: trusted TPM-manufacturer (EK) CAs. */
    readonly ekCaBundle: readonly string[];
    /** Reference policy JSON files or folders of them. */
    readonly referencePolicies: readonly string[];
    /** The operators' enrollment rules (JSON); none: no runtime is assigned anything. */
    readonly enrollmentRules: string | undefined;
    /** How long an enrollment may wait for activation before it expires. */
    readonly pendingEnrollmentTtlSeconds: number;
    /** Largest TCG event log (bytes) and IMA list (bytes, per attestation) accepted. */
    readonly eventLogMaxBytes: number;
    readonly imaLogMaxBytes: number;
    /**
     * Whether disabling or replacing a reference policy, or replacing the EK CA bundle, ends
     * the sessions and revokes the grants of the runtimes that rested on it (issue 18).
     */
    readonly trustChangeCascade: boolean;
  };
  readonly policy: {
    readonly dir: string;
    readonly schemaFile: string;
    readonly watch: boolean;
    /** Worker threads deciding grant requests (0: in the event loop). */
    readonly threads: number;
  };
  /** Token-bucket limits of the runtime-facing routes (src/http/plugins/rate-limit.ts). */
  readonly rateLimits: RateLimitSettings;
  /** Dual control of the operator plane (src/operators/approvals.ts). */
  readonly approvals: ApprovalSettings;
  /** How refused operator attempts are audited (src/operators/refusals.ts). */
  readonly operatorRefusals: RefusalAuditSettings;
  /** Connection limits of the listener (src/http/plugins/connections.ts). */
  readonly connections: ConnectionSettings;
  /** The revocation feed's bounds (docs/protocol.md §3.1, src/grants/revocation-feed.ts). */
  readonly revocationFeed: RevocationFeedLimits;
}

export interface RevocationFeedLimits {
  /** Gateways waiting on `GET /v1/revocations` at once; one more is 503 `revocation_feed_full`. */
  readonly maxSubscribers: number;
  /** Longest wait of one long-poll (a `wait` asked for beyond it is cut to it). */
  readonly maxWaitMs: number;
  /** An answer the subscriber has not taken in this time closes its connection (dropped). */
  readonly sendTimeoutMs: number;
  /** Lifetime of a signed snapshot (`exp - iat`), seconds. */
  readonly snapshotTtlSeconds: number;
}

export interface ConnectionSettings {
  /** A TLS handshake not finished in this time closes the connection. */
  readonly tlsHandshakeTimeoutMs: number;
  /** Open connections at most, in all. */
  readonly maxConnections: number;
  /** Open connections at most per client address (IPv6: per /64). */
  readonly maxConnectionsPerAddress: number;
}

/** The rate-limited route families; each route names its bucket in `config.rateLimit`. */
export const RATE_LIMIT_BUCKETS = [
  'challenges',
  'enroll',
  'attestations',
  'grants',
  'redeem',
  'certify',
  'inventory',
  'rotate',
] as const;
export type RateLimitBucket = (typeof RATE_LIMIT_BUCKETS)[number];

/** A token bucket: up to `burst` at once, refilled at `perSecond`. */
export interface BucketLimit {
  readonly burst: number;
  readonly perSecond: number;
}

export interface BucketLimits {
  readonly perAddress: BucketLimit;
  readonly perRuntime: BucketLimit;
  /** One bucket for the whole appliance (a shared resource such as its TPM); none if unset. */
  readonly perAppliance?: BucketLimit;
}

export interface RateLimitSettings {
  readonly buckets: Readonly<Record<RateLimitBucket, BucketLimits>>;
  /** Most keys (address or runtime, per bucket) kept; the least recently used go first. */
  readonly maxKeys: number;
}

/**
 * Defaults: generous enough for the benches (bench/grants.ts sends 300-1500 grants/s from
 * one address and one runtime) and the test suites, tight enough that one runtime flooding
 * challenges, enrollments or attestations is refused long before it costs a TPM-bound
 * verification per request.
 */
export const DEFAULT_RATE_LIMIT_BUCKETS: RateLimitSettings['buckets'] = {
  challenges: {
    perAddress: { burst: 600, perSecond: 300 },
    perRuntime: { burst: 60, perSecond: 20 },
  },
  enroll: { perAddress: { burst: 100, perSecond: 10 }, perRuntime: { burst: 10, perSecond: 1 } },
  attestations: {
    perAddress: { burst: 600, perSecond: 300 },
    perRuntime: { burst: 60, perSecond: 20 },
  },
  grants: {
    perAddress: { burst: 8000, perSecond: 4000 },
    perRuntime: { burst: 4000, perSecond: 2000 },
  },
  redeem: {
    perAddress: { burst: 8000, perSecond: 4000 },
    perRuntime: { burst: 4000, perSecond: 2000 },
  },
  // Checkpoints with a nonce: each costs the appliance's TPM a CreatePrimary and two
  // NV_Certify, in the queue the audit anchor needs; anyone may ask (public route).
  certify: {
    perAddress: { burst: 10, perSecond: 2 },
    perRuntime: { burst: 10, perSecond: 2 },
    perAppliance: { burst: 20, perSecond: 10 },
  },
  // Operators reading and changing runtimes (GET /v1/runtimes reads up to 4,096 records).
  inventory: {
    perAddress: { burst: 60, perSecond: 10 },
    perRuntime: { burst: 60, perSecond: 10 },
  },
  // On-demand key rotations (key custodians): each is an HSM key generation and a new key
  // every verifier must fetch; a few in a row at most, then one per 5 minutes.
  rotate: {
    perAddress: { burst: 3, perSecond: 1 / 60 },
    perRuntime: { burst: 3, perSecond: 1 / 60 },
    perAppliance: { burst: 3, perSecond: 1 / 300 },
  },
};

export interface ApprovalSettings {
  /** M: distinct approvals each dual-controlled act needs (at least 2). */
  readonly required: number;
  /** How long an approval request stays open. */
  readonly requestTtlSeconds: number;
  /** How long one given approval stays usable. */
  readonly approvalTtlSeconds: number;
}

export interface RefusalAuditSettings {
  /** One audit entry per (address, route, reason) per window; repeats are counted into the next. */
  readonly windowSeconds: number;
  /** At most this many refusal entries per window in all; the rest are counted, not written. */
  readonly maxEntriesPerWindow: number;
}

type Source = Readonly<Record<string, string | undefined>>;

/** Keys accepted in the environment and (without the GRANTOR_ prefix, camelCase) in the file. */
const FILE_KEYS: Readonly<Record<string, string>> = {
  applianceId: 'GRANTOR_APPLIANCE_ID',
  listen: 'GRANTOR_LISTEN',
  tlsCert: 'GRANTOR_TLS_CERT',
  tlsKey: 'GRANTOR_TLS_KEY',
  operatorCa: 'GRANTOR_OPERATOR_CA',
  stateDir: 'GRANTOR_STATE_DIR',
  logLevel: 'GRANTOR_LOG_LEVEL',
  tpmTcti: 'GRANTOR_TPM_TCTI',
  tpmOwnerAuthFile: 'GRANTOR_TPM_OWNER_AUTH_FILE',
  pkcs11Module: 'GRANTOR_PKCS11_MODULE',
  hsmTokenLabel: 'GRANTOR_HSM_TOKEN_LABEL',
  hsmPinFile: 'GRANTOR_HSM_PIN_FILE',
  auditPkcs11Module: 'GRANTOR_AUDIT_PKCS11_MODULE',
  auditHsmTokenLabel: 'GRANTOR_AUDIT_HSM_TOKEN_LABEL',
  auditHsmPinFile: 'GRANTOR_AUDIT_HSM_PIN_FILE',
  grantBatch: 'GRANTOR_GRANT_BATCH',
  grantBatchSize: 'GRANTOR_GRANT_BATCH_SIZE',
  grantBatchWaitMs: 'GRANTOR_GRANT_BATCH_WAIT_MS',
  auditNvCounter: 'GRANTOR_AUDIT_NV_COUNTER',
  auditNvExtend: 'GRANTOR_AUDIT_NV_EXTEND',
  auditNvNames: 'GRANTOR_AUDIT_NV_NAMES',
  auditMinAnchorIntervalMs: 'GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS',
  auditPeriodHours: 'GRANTOR_AUDIT_PERIOD_HOURS',
  auditAnchorPin: 'GRANTOR_AUDIT_ANCHOR_PIN',
  auditExportMaxEntries: 'GRANTOR_AUDIT_EXPORT_MAX_ENTRIES',
  keyRotationPeriodSeconds: 'GRANTOR_KEY_ROTATION_PERIOD_SECONDS',
  grantMaxTtlSeconds: 'GRANTOR_GRANT_MAX_TTL_SECONDS',
  hsmSignDeadlineMs: 'GRANTOR_HSM_SIGN_DEADLINE_MS',
  ekCaBundle: 'GRANTOR_EK_CA_BUNDLE',
  referencePolicies: 'GRANTOR_REFERENCE_POLICIES',
  enrollmentRules: 'GRANTOR_ENROLLMENT_RULES',
  enrollmentPendingTtlSeconds: 'GRANTOR_ENROLLMENT_PENDING_TTL_SECONDS',
  trustChangeCascade: 'GRANTOR_TRUST_CHANGE_CASCADE',
  policyDir: 'GRANTOR_POLICY_DIR',
  policySchema: 'GRANTOR_POLICY_SCHEMA',
  policyWatch: 'GRANTOR_POLICY_WATCH',
  policyThreads: 'GRANTOR_POLICY_THREADS',
  rateLimitMaxKeys: 'GRANTOR_RATE_LIMIT_MAX_KEYS',
  ...Object.fromEntries(
    RATE_LIMIT_BUCKETS.flatMap((b) =>
      (['Address', 'Runtime', 'Appliance'] as const).map((scope) => [
        `rateLimit${b[0]?.toUpperCase() ?? ''}${b.slice(1)}Per${scope}`,
        rateLimitKey(b, scope),
      ]),
    ),
  ),
  approvalsRequired: 'GRANTOR_APPROVALS_REQUIRED',
  approvalRequestTtlSeconds: 'GRANTOR_APPROVAL_REQUEST_TTL_SECONDS',
  approvalTtlSeconds: 'GRANTOR_APPROVAL_TTL_SECONDS',
  operatorRefusalWindowSeconds: 'GRANTOR_OPERATOR_REFUSAL_WINDOW_SECONDS',
  operatorRefusalMaxPerWindow: 'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW',
  tlsHandshakeTimeoutMs: 'GRANTOR_TLS_HANDSHAKE_TIMEOUT_MS',
  maxConnections: 'GRANTOR_MAX_CONNECTIONS',
  maxConnectionsPerAddress: 'GRANTOR_MAX_CONNECTIONS_PER_ADDRESS',
  revocationFeedMaxSubscribers: 'GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS',
  revocationFeedMaxWaitMs: 'GRANTOR_REVOCATION_FEED_MAX_WAIT_MS',
  revocationFeedSendTimeoutMs: 'GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS',
  revocationSnapshotTtlSeconds: 'GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS',
};

/** GRANTOR_RATE_LIMIT_<BUCKET>_PER_<ADDRESS|RUNTIME|APPLIANCE>, e.g. ..._CHALLENGES_PER_RUNTIME. */
function rateLimitKey(bucket: RateLimitBucket, scope: 'Address' | 'Runtime' | 'Appliance'): string {
  return `GRANTOR_RATE_LIMIT_${bucket.toUpperCase()}_PER_${scope.toUpperCase()}`;
}

/** "BURST:PER_SECOND", e.g. "60:20"; PER_SECOND may be fractional (0.5: one every 2 s). */
function bucketLimit<F extends BucketLimit | undefined>(
  src: Source,
  key: string,
  fallback: F,
): BucketLimit | F {
  const raw = src[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const m = /^\s*(\d{1,9})\s*:\s*(\d{1,9}(?:\.\d{1,6})?)\s*$/.exec(raw);
  const burst = Number(m?.[1]);
  const perSecond = Number(m?.[2]);
  if (m === null || burst < 1 || perSecond <= 0) {
    throw new ConfigError(key, `expected BURST:PER_SECOND (e.g. 60:20, both > 0), got "${raw}"`);
  }
  return { burst, perSecond };
}

const optionalLimit = (limit: BucketLimit | undefined): { perAppliance?: BucketLimit } =>
  limit === undefined ? {} : { perAppliance: limit };

function rateLimits(src: Source): RateLimitSettings {
  const buckets = Object.fromEntries(
    RATE_LIMIT_BUCKETS.map((b) => [
      b,
      {
        perAddress: bucketLimit(
          src,
          rateLimitKey(b, 'Address'),
          DEFAULT_RATE_LIMIT_BUCKETS[b].perAddress,
        ),
        perRuntime: bucketLimit(
          src,
          rateLimitKey(b, 'Runtime'),
          DEFAULT_RATE_LIMIT_BUCKETS[b].perRuntime,
        ),
        ...optionalLimit(
          bucketLimit(
            src,
            rateLimitKey(b, 'Appliance'),
            DEFAULT_RATE_LIMIT_BUCKETS[b].perAppliance,
          ),
        ),
      },
    ]),
  ) as unknown as RateLimitSettings['buckets'];
  return {
    buckets,
    maxKeys: integer(src, 'GRANTOR_RATE_LIMIT_MAX_KEYS', 10_000, 100, 10_000_000),
  };
}

/** Where the shipped defaults live (policies, trust bundles), relative to the repository. */
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const shipped = (p: string): string =>
  // From dist/src/shared as well as from src/shared.
  resolve(REPO_ROOT.endsWith('/dist') ? resolve(REPO_ROOT, '..') : REPO_ROOT, p);

/** 0 (the default) is no scheduled log period: none in the settings. */
function auditPeriod(hours: number): { periodHours?: number } {
  return hours === 0 ? {} : { periodHours: hours };
}

function integer(src: Source, key: string, fallback: number, min: number, max: number): number {
  const raw = src[key];
  if (raw === undefined || raw.trim() === '') return fallback;
  const text = raw.trim();
  const v = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text, 16) : Number(text);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `expected an integer from ${min} to ${max}, got "${text}"`);
  }
  return v;
}

function list(src: Source, key: string, fallback: readonly string[], cwd: string): string[] {
  const raw = src[key];
  const items = raw === undefined || raw.trim() === '' ? fallback : raw.split(',');
  return items
    .map((i) => i.trim())
    .filter((i) => i !== '')
    .map((i) => resolve(cwd, i));
}

function nvIndex(src: Source, key: string, fallback: number): number {
  const v = integer(src, key, fallback, 0x01000000, 0x01ffffff);
  // Owner-defined indices only: 0x01000000-0x013fffff (TPM_HT_NV_INDEX, owner range) and
  // 0x01500000-0x01bfffff (TCG-registered and vendor ranges are refused).
  if (v >= 0x01c00000)
    throw new ConfigError(key, 'is in the TCG-reserved NV range (EK certificates)');
  return v;
}

function pinnedNames(src: Source): AuditSettings['pinnedNames'] {
  const raw = src.GRANTOR_AUDIT_NV_NAMES;
  if (raw === undefined || raw.trim() === '') return undefined;
  const m = /^\s*(000b[0-9a-f]{64})\s*,\s*(000b[0-9a-f]{64})\s*$/i.exec(raw);
  if (m === null) {
    throw new ConfigError(
      'GRANTOR_AUDIT_NV_NAMES',
      'expected "COUNTER_NAME_HEX,EXTEND_NAME_HEX" (SHA-256 NV names)',
    );
  }
  return { counter: (m[1] ?? '').toLowerCase(), extend: (m[2] ?? '').toLowerCase() };
}

function bool(src: Source, key: string, fallback: boolean): boolean {
  const raw = src[key]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(key, 'expected true or false');
}

function required(src: Source, key: string): string {
  const v = src[key];
  if (v === undefined || v.trim() === '') throw new ConfigError(key, 'is required');
  return v.trim();
}

function optional(src: Source, key: string, fallback: string): string {
  const v = src[key];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}

export function parseListen(key: string, value: string): ListenConfig {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (m === null) throw new ConfigError(key, `expected HOST:PORT, got "${value}"`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(key, `port out of range: ${m[2] ?? ''}`);
  }
  return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port };
}

export function parseTcti(key: string, value: string): string {
  if (/^swtpm:host=[^,]+,port=\d{1,5}$/.test(value) || /^device:\/\S+$/.test(value)) return value;
  // The resource manager daemon (tpm2-abrmd), shared with tpm2-pkcs11 on one TPM.
  if (/^tabrmd(:[A-Za-z0-9_.=,-]*)?$/.test(value)) return value;
  throw new ConfigError(
    key,
    `expected "swtpm:host=H,port=P" or "device:/dev/tpmrm0", got "${value}"`,
  );
}

/** Loopback hosts: the only ones a plain-HTTP listener may bind. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * TLS settings: certificate and key both or neither. Without them the listener is plain
 * HTTP, which is refused off loopback: operator tokens and grants would cross the network
 * in the clear.
 */
function tlsSettings(src: Source, cwd: string, listen: ListenConfig): TlsSettings | undefined {
  const cert = optional(src, 'GRANTOR_TLS_CERT', '');
  const key = optional(src, 'GRANTOR_TLS_KEY', '');
  const ca = optional(src, 'GRANTOR_OPERATOR_CA', '');
  if (cert === '' && key === '') {
    if (ca !== '') {
      throw new ConfigError(
        'GRANTOR_OPERATOR_CA',
        'client certificates need TLS: set GRANTOR_TLS_CERT and GRANTOR_TLS_KEY',
      );
    }
    if (!isLoopbackHost(listen.host)) {
      throw new ConfigError(
        'GRANTOR_LISTEN',
        `plain HTTP is only allowed on a loopback host, got "${listen.host}": set GRANTOR_TLS_CERT and GRANTOR_TLS_KEY`,
      );
    }
    return undefined;
  }
  if (cert === '') throw new ConfigError('GRANTOR_TLS_CERT', 'is required with GRANTOR_TLS_KEY');
  if (key === '') throw new ConfigError('GRANTOR_TLS_KEY', 'is required with GRANTOR_TLS_CERT');
  return {
    certFile: resolve(cwd, cert),
    keyFile: resolve(cwd, key),
    ...(ca === '' ? {} : { operatorCaFile: resolve(cwd, ca) }),
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

function readPin(
  src: Source,
  cwd: string,
  prefix: 'GRANTOR_HSM' | 'GRANTOR_AUDIT_HSM' = 'GRANTOR_HSM',
): { pin: string; pinSource: string } {
  const file = src[`${prefix}_PIN_FILE`];
  const env = src[`${prefix}_PIN`];
  if (file !== undefined && file !== '' && env !== undefined && env !== '') {
    throw new ConfigError(
      `${prefix}_PIN`,
      `set either ${prefix}_PIN_FILE or ${prefix}_PIN, not both`,
    );
  }
  if (file !== undefined && file !== '') {
    const path = isAbsolute(file) ? file : resolve(cwd, file);
    let pin: string;
    try {
      pin = readFileSync(path, 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(`${prefix}_PIN_FILE`, `cannot read ${path} (${code})`);
    }
    if (pin === '') throw new ConfigError(`${prefix}_PIN_FILE`, `${path} is empty`);
    return { pin, pinSource: `file ${path}` };
  }
  if (env !== undefined && env !== '') return { pin: env, pinSource: 'environment' };
  throw new ConfigError(`${prefix}_PIN_FILE`, `is required (or ${prefix}_PIN)`);
}

/** GRANTOR_TPM_OWNER_AUTH_FILE, resolved; read (and its mode checked) when used. */
function ownerAuthFile(src: Source, cwd: string): { ownerAuthFile?: string } {
  const path = optional(src, 'GRANTOR_TPM_OWNER_AUTH_FILE', '');
  return path === '' ? {} : { ownerAuthFile: resolve(cwd, path) };
}

/** tpm2-pkcs11, the TPM's PKCS#11 module (recognised by its file name). */
export function isTpmPkcs11Module(path: string): boolean {
  return /(^|\/)libtpm2_pkcs11\.so(\.[0-9.]+)?$/.test(path);
}

/**
 * The audit key's own token. A TPM has no Ed25519 (the checkpoint format's algorithm): with
 * the grant key in the TPM, the audit key needs a token that has it (an HSM, SoftHSM2).
 */
function auditHsm(src: Source, cwd: string, grantModule: string): HsmConfig | undefined {
  const module = optional(src, 'GRANTOR_AUDIT_PKCS11_MODULE', '');
  if (module === '') {
    if (isTpmPkcs11Module(grantModule)) {
      throw new ConfigError(
        'GRANTOR_AUDIT_PKCS11_MODULE',
        'is required when GRANTOR_PKCS11_MODULE is tpm2-pkcs11: the audit checkpoint key is Ed25519, which a TPM does not have',
      );
    }
    return undefined;
  }
  if (!isAbsolute(module))
    throw new ConfigError('GRANTOR_AUDIT_PKCS11_MODULE', 'must be an absolute path');
  if (isTpmPkcs11Module(module)) {
    throw new ConfigError(
      'GRANTOR_AUDIT_PKCS11_MODULE',
      'cannot be tpm2-pkcs11: the audit checkpoint key is Ed25519, which a TPM does not have',
    );
  }
  return {
    module,
    tokenLabel: required(src, 'GRANTOR_AUDIT_HSM_TOKEN_LABEL'),
    ...readPin(src, cwd, 'GRANTOR_AUDIT_HSM'),
  };
}

function readFileLayer(path: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(
      'GRANTOR_CONFIG',
      `cannot read JSON from ${path}: ${(e as Error).message}`,
    );
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('GRANTOR_CONFIG', `${path} must hold a JSON object`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    const envKey = FILE_KEYS[k];
    if (envKey === undefined) throw new ConfigError(k, `unknown key in ${path}`);
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw new ConfigError(k, `must be a string or number in ${path}`);
    }
    out[envKey] = String(v);
  }
  return out;
}

/** Build the configuration from an environment (process.env by default). */
export function loadConfig(env: Source = process.env, cwd = process.cwd()): AppConfig {
  const fileName = env.GRANTOR_CONFIG;
  const src: Source = {
    ...(fileName !== undefined && fileName !== '' ? readFileLayer(resolve(cwd, fileName)) : {}),
    ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)),
  };
  const logLevel = optional(src, 'GRANTOR_LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('GRANTOR_LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const module = required(src, 'GRANTOR_PKCS11_MODULE');
  if (!isAbsolute(module))
    throw new ConfigError('GRANTOR_PKCS11_MODULE', 'must be an absolute path');
  const audHsm = auditHsm(src, cwd, module);
  const listen = parseListen('GRANTOR_LISTEN', optional(src, 'GRANTOR_LISTEN', '127.0.0.1:8443'));
  const tls = tlsSettings(src, cwd, listen);
  return {
    applianceId: optional(src, 'GRANTOR_APPLIANCE_ID', 'grantor'),
    listen,
    ...(tls === undefined ? {} : { tls }),
    stateDir: resolve(cwd, optional(src, 'GRANTOR_STATE_DIR', 'var')),
    logLevel: logLevel as AppConfig['logLevel'],
    tpm: {
      tcti: parseTcti('GRANTOR_TPM_TCTI', required(src, 'GRANTOR_TPM_TCTI')),
      ...ownerAuthFile(src, cwd),
    },
    hsm: {
      module,
      tokenLabel: required(src, 'GRANTOR_HSM_TOKEN_LABEL'),
      ...readPin(src, cwd),
    },
    ...(audHsm === undefined ? {} : { auditHsm: audHsm }),
    audit: {
      nvCounterIndex: nvIndex(src, 'GRANTOR_AUDIT_NV_COUNTER', 0x01500020),
      nvExtendIndex: nvIndex(src, 'GRANTOR_AUDIT_NV_EXTEND', 0x01500021),
      pinnedNames: pinnedNames(src),
      // Production default for a hardware TPM (NV wear, docs/audit.md); swtpm rigs set 0.
      minAnchorIntervalMs: integer(src, 'GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS', 1000, 0, 60_000),
      ...auditPeriod(integer(src, 'GRANTOR_AUDIT_PERIOD_HOURS', 0, 0, 87_600)),
      pinFile: resolve(
        cwd,
        optional(
          src,
          'GRANTOR_AUDIT_ANCHOR_PIN',
          `${resolve(cwd, optional(src, 'GRANTOR_STATE_DIR', 'var'))}.anchor-pin.json`,
        ),
      ),
      // A bundle streams (bounded memory at any size); the bound is per call, for the TPM
      // and disk time one call may take.
      exportMaxEntries: integer(
        src,
        'GRANTOR_AUDIT_EXPORT_MAX_ENTRIES',
        // The default of src/audit/bundle.ts DEFAULT_MAX_BUNDLE_ENTRIES (config.test.ts).
        100_000,
        1,
        100_000_000,
      ),
    },
    keys: {
      rotationPeriodSeconds: integer(
        src,
        'GRANTOR_KEY_ROTATION_PERIOD_SECONDS',
        30 * 86400,
        0,
        10 * 365 * 86400,
      ),
      grantMaxTtlSeconds: integer(src, 'GRANTOR_GRANT_MAX_TTL_SECONDS', 3600, 1, 86400),
      signDeadlineMs: integer(src, 'GRANTOR_HSM_SIGN_DEADLINE_MS', 2000, 10, 60_000),
      sessions: integer(src, 'GRANTOR_HSM_SESSIONS', 4, 1, 64),
      signThreads: integer(src, 'GRANTOR_HSM_SIGN_THREADS', availableParallelism(), 1, 64),
      grantBatch: {
        enabled: bool(src, 'GRANTOR_GRANT_BATCH', false),
        maxSize: integer(src, 'GRANTOR_GRANT_BATCH_SIZE', 64, 2, 4096),
        maxWaitMs: integer(src, 'GRANTOR_GRANT_BATCH_WAIT_MS', 2, 0, 1000),
      },
    },
    attestation: {
      ekCaBundle: list(src, 'GRANTOR_EK_CA_BUNDLE', [shipped('trust/ek-ca')], cwd),
      // No default: no reference policy is active unless configured (fail closed).
      referencePolicies: list(src, 'GRANTOR_REFERENCE_POLICIES', [], cwd),
      enrollmentRules:
        src.GRANTOR_ENROLLMENT_RULES === undefined || src.GRANTOR_ENROLLMENT_RULES.trim() === ''
          ? undefined
          : resolve(cwd, src.GRANTOR_ENROLLMENT_RULES.trim()),
      pendingEnrollmentTtlSeconds: integer(
        src,
        'GRANTOR_ENROLLMENT_PENDING_TTL_SECONDS',
        900,
        10,
        7 * 86400,
      ),
      eventLogMaxBytes: integer(src, 'GRANTOR_EVENT_LOG_MAX_BYTES', 1 << 19, 1024, 1 << 26),
      imaLogMaxBytes: integer(src, 'GRANTOR_IMA_LOG_MAX_BYTES', 1 << 22, 1024, 1 << 28),
      // On unless turned off; anything but true/false/1/0 stops the start (fail closed).
      trustChangeCascade: bool(src, 'GRANTOR_TRUST_CHANGE_CASCADE', true),
    },
    policy: {
      dir: resolve(cwd, optional(src, 'GRANTOR_POLICY_DIR', shipped('policies/default'))),
      schemaFile: resolve(
        cwd,
        optional(src, 'GRANTOR_POLICY_SCHEMA', shipped('policies/grantor.cedarschema')),
      ),
      watch: bool(src, 'GRANTOR_POLICY_WATCH', true),
      // One core stays with the event loop; a one-core machine decides in it.
      threads: integer(
        src,
        'GRANTOR_POLICY_THREADS',
        Math.min(4, availableParallelism() - 1),
        0,
        64,
      ),
    },
    rateLimits: rateLimits(src),
    approvals: {
      // Below 2 there is no dual control left to configure.
      required: integer(src, 'GRANTOR_APPROVALS_REQUIRED', 2, 2, 16),
      requestTtlSeconds: integer(
        src,
        'GRANTOR_APPROVAL_REQUEST_TTL_SECONDS',
        86_400,
        60,
        30 * 86_400,
      ),
      approvalTtlSeconds: integer(src, 'GRANTOR_APPROVAL_TTL_SECONDS', 3600, 60, 7 * 86_400),
    },
    operatorRefusals: {
      windowSeconds: integer(src, 'GRANTOR_OPERATOR_REFUSAL_WINDOW_SECONDS', 60, 1, 86_400),
      maxEntriesPerWindow: integer(src, 'GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW', 100, 1, 100_000),
    },
    connections: {
      tlsHandshakeTimeoutMs: integer(src, 'GRANTOR_TLS_HANDSHAKE_TIMEOUT_MS', 10_000, 100, 120_000),
      maxConnections: integer(src, 'GRANTOR_MAX_CONNECTIONS', 4096, 1, 1_000_000),
      maxConnectionsPerAddress: integer(
        src,
        'GRANTOR_MAX_CONNECTIONS_PER_ADDRESS',
        256,
        1,
        1_000_000,
      ),
    },
    revocationFeed: {
      // Each waiting gateway holds a connection: at most GRANTOR_MAX_CONNECTIONS of them.
      maxSubscribers: integer(src, 'GRANTOR_REVOCATION_FEED_MAX_SUBSCRIBERS', 256, 1, 65_536),
      // A gateway asks for at most 60 s (the route's `wait`).
      maxWaitMs: integer(src, 'GRANTOR_REVOCATION_FEED_MAX_WAIT_MS', 25_000, 0, 60_000),
      sendTimeoutMs: integer(src, 'GRANTOR_REVOCATION_FEED_SEND_TIMEOUT_MS', 10_000, 100, 120_000),
      snapshotTtlSeconds: integer(src, 'GRANTOR_REVOCATION_SNAPSHOT_TTL_SECONDS', 300, 10, 3600),
    },
  };
}

/** The configuration as it may be printed or logged: secrets replaced. */
export function redactedConfig(config: AppConfig): unknown {
  return {
    ...config,
    hsm: { ...config.hsm, pin: '[redacted]' },
    ...(config.auditHsm === undefined
      ? {}
      : { auditHsm: { ...config.auditHsm, pin: '[redacted]' } }),
  };
}
