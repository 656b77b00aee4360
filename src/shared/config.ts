/**
 * The appliance's configuration: one typed, validated object, read from the environment
 * (GRANTOR_*), optionally layered over a JSON file named by GRANTOR_CONFIG. A bad value
 * fails with a ConfigError naming the key; secrets (the HSM PIN) are resolved here and
 * never printed (see `redactedConfig`).
 *
 * Each domain owns its section (its GRANTOR_* names, defaults, parsing and validation) in
 * its own `config.ts` (src/tpm, src/keys, src/audit, src/attestation, src/policy,
 * src/operators, src/grants), written with the helpers of ./config-parse.ts; this file
 * composes them and keeps what belongs to the appliance as a whole: its id, state folder,
 * log level, and the listener (address, TLS, connection and rate limits), which src/http
 * reads but which no domain may import from there.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  ATTESTATION_FILE_KEYS,
  attestationSettings,
  type AttestationSettings,
} from '../attestation/config.js';
import { AUDIT_FILE_KEYS, auditSettings, type AuditSettings } from '../audit/config.js';
import {
  GRANTS_FILE_KEYS,
  revocationFeedLimits,
  type RevocationFeedLimits,
} from '../grants/config.js';
import {
  KEYS_FILE_KEYS,
  auditHsmConfig,
  hsmConfig,
  keySettings,
  pkcs11Module,
  type HsmConfig,
  type KeySettings,
} from '../keys/config.js';
import {
  OPERATORS_FILE_KEYS,
  approvalSettings,
  refusalAuditSettings,
  type ApprovalSettings,
  type RefusalAuditSettings,
} from '../operators/config.js';
import { POLICY_FILE_KEYS, policySettings, type PolicySettings } from '../policy/config.js';
import { TPM_FILE_KEYS, tpmConfig, type TpmConfig } from '../tpm/config.js';
import { integer, optional, type FileKeys, type Source } from './config-parse.js';
import { ConfigError } from './errors.js';

export type {
  ApprovalSettings,
  AttestationSettings,
  AuditSettings,
  HsmConfig,
  KeySettings,
  PolicySettings,
  RefusalAuditSettings,
  RevocationFeedLimits,
  TpmConfig,
};

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
  readonly keys: KeySettings;
  readonly attestation: AttestationSettings;
  readonly policy: PolicySettings;
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

/** `[burst, perSecond]`: one token bucket, written as a table row. */
export type BucketPair = readonly [burst: number, perSecond: number];

/** The limits of one bucket from its pairs: per address, per runtime, per appliance. */
export function bucketLimits(
  perAddress: BucketPair,
  perRuntime: BucketPair,
  perAppliance?: BucketPair,
): BucketLimits {
  const limit = ([burst, perSecond]: BucketPair): BucketLimit => ({ burst, perSecond });
  const both = { perAddress: limit(perAddress), perRuntime: limit(perRuntime) };
  return perAppliance === undefined ? both : { ...both, perAppliance: limit(perAppliance) };
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
  challenges: bucketLimits([600, 300], [60, 20]),
  enroll: bucketLimits([100, 10], [10, 1]),
  attestations: bucketLimits([600, 300], [60, 20]),
  grants: bucketLimits([8000, 4000], [4000, 2000]),
  redeem: bucketLimits([8000, 4000], [4000, 2000]),
  // Checkpoints with a nonce: each costs the appliance's TPM a CreatePrimary and two
  // NV_Certify, in the queue the audit anchor needs; anyone may ask (public route).
  certify: bucketLimits([10, 2], [10, 2], [20, 10]),
  // Operators reading and changing runtimes (GET /v1/runtimes reads up to 4,096 records).
  inventory: bucketLimits([60, 10], [60, 10]),
  // On-demand key rotations (key custodians): each is an HSM key generation and a new key
  // every verifier must fetch; a few in a row at most, then one per 5 minutes.
  rotate: bucketLimits([3, 1 / 60], [3, 1 / 60], [3, 1 / 300]),
};

/** Keys accepted in the environment and (without the GRANTOR_ prefix, camelCase) in the file. */
const FILE_KEYS: FileKeys = {
  applianceId: 'GRANTOR_APPLIANCE_ID',
  listen: 'GRANTOR_LISTEN',
  tlsCert: 'GRANTOR_TLS_CERT',
  tlsKey: 'GRANTOR_TLS_KEY',
  operatorCa: 'GRANTOR_OPERATOR_CA',
  stateDir: 'GRANTOR_STATE_DIR',
  logLevel: 'GRANTOR_LOG_LEVEL',
  ...TPM_FILE_KEYS,
  ...KEYS_FILE_KEYS,
  ...AUDIT_FILE_KEYS,
  ...ATTESTATION_FILE_KEYS,
  ...POLICY_FILE_KEYS,
  rateLimitMaxKeys: 'GRANTOR_RATE_LIMIT_MAX_KEYS',
  ...Object.fromEntries(
    RATE_LIMIT_BUCKETS.flatMap((b) =>
      (['Address', 'Runtime', 'Appliance'] as const).map((scope) => [
        `rateLimit${b[0]?.toUpperCase() ?? ''}${b.slice(1)}Per${scope}`,
        rateLimitKey(b, scope),
      ]),
    ),
  ),
  ...OPERATORS_FILE_KEYS,
  tlsHandshakeTimeoutMs: 'GRANTOR_TLS_HANDSHAKE_TIMEOUT_MS',
  maxConnections: 'GRANTOR_MAX_CONNECTIONS',
  maxConnectionsPerAddress: 'GRANTOR_MAX_CONNECTIONS_PER_ADDRESS',
  ...GRANTS_FILE_KEYS,
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

export function parseListen(key: string, value: string): ListenConfig {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (m === null) throw new ConfigError(key, `expected HOST:PORT, got "${value}"`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(key, `port out of range: ${m[2] ?? ''}`);
  }
  return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port };
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
  const module = pkcs11Module(src);
  const audHsm = auditHsmConfig(src, cwd, module);
  const listen = parseListen('GRANTOR_LISTEN', optional(src, 'GRANTOR_LISTEN', '127.0.0.1:8443'));
  const tls = tlsSettings(src, cwd, listen);
  const stateDir = resolve(cwd, optional(src, 'GRANTOR_STATE_DIR', 'var'));
  // Sections in this order: with several bad values, the first one named is the same.
  return {
    applianceId: optional(src, 'GRANTOR_APPLIANCE_ID', 'grantor'),
    listen,
    ...(tls === undefined ? {} : { tls }),
    stateDir,
    logLevel: logLevel as AppConfig['logLevel'],
    tpm: tpmConfig(src, cwd),
    hsm: hsmConfig(src, cwd, module),
    ...(audHsm === undefined ? {} : { auditHsm: audHsm }),
    audit: auditSettings(src, cwd, stateDir),
    keys: keySettings(src),
    attestation: attestationSettings(src, cwd),
    policy: policySettings(src, cwd),
    rateLimits: rateLimits(src),
    approvals: approvalSettings(src),
    operatorRefusals: refusalAuditSettings(src),
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
    revocationFeed: revocationFeedLimits(src),
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
