/**
 * The key domain's configuration section: the PKCS#11 token of the grant keys (and the
 * audit checkpoint key's own token when it needs one), the PIN, rotation, signing
 * deadlines, sessions and batch signing. Composed into AppConfig by src/shared/config.ts.
 * The PIN is resolved here and never printed (src/shared/config.ts `redactedConfig`).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import {
  bool,
  integer,
  optional,
  required,
  type FileKeys,
  type Source,
} from '../shared/config-parse.js';
import { ConfigError } from '../shared/errors.js';

export interface HsmConfig {
  readonly module: string;
  readonly tokenLabel: string;
  /** Resolved from GRANTOR_HSM_PIN_FILE or GRANTOR_HSM_PIN. Never log it. */
  readonly pin: string;
  /** Where the PIN came from, for messages ("file /x" or "environment"). */
  readonly pinSource: string;
}

export interface KeySettings {
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
}

export const KEYS_FILE_KEYS: FileKeys = {
  pkcs11Module: 'GRANTOR_PKCS11_MODULE',
  hsmTokenLabel: 'GRANTOR_HSM_TOKEN_LABEL',
  hsmPinFile: 'GRANTOR_HSM_PIN_FILE',
  auditPkcs11Module: 'GRANTOR_AUDIT_PKCS11_MODULE',
  auditHsmTokenLabel: 'GRANTOR_AUDIT_HSM_TOKEN_LABEL',
  auditHsmPinFile: 'GRANTOR_AUDIT_HSM_PIN_FILE',
  grantBatch: 'GRANTOR_GRANT_BATCH',
  grantBatchSize: 'GRANTOR_GRANT_BATCH_SIZE',
  grantBatchWaitMs: 'GRANTOR_GRANT_BATCH_WAIT_MS',
  keyRotationPeriodSeconds: 'GRANTOR_KEY_ROTATION_PERIOD_SECONDS',
  grantMaxTtlSeconds: 'GRANTOR_GRANT_MAX_TTL_SECONDS',
  hsmSignDeadlineMs: 'GRANTOR_HSM_SIGN_DEADLINE_MS',
};

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

/** tpm2-pkcs11, the TPM's PKCS#11 module (recognised by its file name). */
export function isTpmPkcs11Module(path: string): boolean {
  return /(^|\/)libtpm2_pkcs11\.so(\.[0-9.]+)?$/.test(path);
}

/** GRANTOR_PKCS11_MODULE: the grant keys' PKCS#11 module, an absolute path. */
export function pkcs11Module(src: Source): string {
  const module = required(src, 'GRANTOR_PKCS11_MODULE');
  if (!isAbsolute(module))
    throw new ConfigError('GRANTOR_PKCS11_MODULE', 'must be an absolute path');
  return module;
}

/** The grant keys' token in `module` (pkcs11Module), with its PIN. */
export function hsmConfig(src: Source, cwd: string, module: string): HsmConfig {
  return {
    module,
    tokenLabel: required(src, 'GRANTOR_HSM_TOKEN_LABEL'),
    ...readPin(src, cwd),
  };
}

/**
 * The audit key's own token. A TPM has no Ed25519 (the checkpoint format's algorithm): with
 * the grant key in the TPM, the audit key needs a token that has it (an HSM, SoftHSM2).
 */
export function auditHsmConfig(
  src: Source,
  cwd: string,
  grantModule: string,
): HsmConfig | undefined {
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

export function keySettings(src: Source): KeySettings {
  return {
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
  };
}
