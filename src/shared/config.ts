/**
 * The appliance's configuration: one typed, validated object, read from the environment
 * (GRANTOR_*), optionally layered over a JSON file named by GRANTOR_CONFIG. A bad value
 * fails with a ConfigError naming the key; secrets (the HSM PIN) are resolved here and
 * never printed (see `redactedConfig`).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './errors.js';

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

export interface TpmConfig {
  /** tpm2-tss TCTI: `swtpm:host=H,port=P` (simulator) or `device:/dev/tpmrm0`. */
  readonly tcti: string;
}

export interface HsmConfig {
  readonly module: string;
  readonly tokenLabel: string;
  /** Resolved from GRANTOR_HSM_PIN_FILE or GRANTOR_HSM_PIN. Never log it. */
  readonly pin: string;
  /** Where the PIN came from, for messages ("file /x" or "environment"). */
  readonly pinSource: string;
}

export interface AppConfig {
  readonly applianceId: string;
  readonly listen: ListenConfig;
  readonly stateDir: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  readonly tpm: TpmConfig;
  readonly hsm: HsmConfig;
}

type Source = Readonly<Record<string, string | undefined>>;

/** Keys accepted in the environment and (without the GRANTOR_ prefix, camelCase) in the file. */
const FILE_KEYS: Readonly<Record<string, string>> = {
  applianceId: 'GRANTOR_APPLIANCE_ID',
  listen: 'GRANTOR_LISTEN',
  stateDir: 'GRANTOR_STATE_DIR',
  logLevel: 'GRANTOR_LOG_LEVEL',
  tpmTcti: 'GRANTOR_TPM_TCTI',
  pkcs11Module: 'GRANTOR_PKCS11_MODULE',
  hsmTokenLabel: 'GRANTOR_HSM_TOKEN_LABEL',
  hsmPinFile: 'GRANTOR_HSM_PIN_FILE',
};

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
  throw new ConfigError(
    key,
    `expected "swtpm:host=H,port=P" or "device:/dev/tpmrm0", got "${value}"`,
  );
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

function readPin(src: Source, cwd: string): { pin: string; pinSource: string } {
  const file = src.GRANTOR_HSM_PIN_FILE;
  const env = src.GRANTOR_HSM_PIN;
  if (file !== undefined && file !== '' && env !== undefined && env !== '') {
    throw new ConfigError(
      'GRANTOR_HSM_PIN',
      'set either GRANTOR_HSM_PIN_FILE or GRANTOR_HSM_PIN, not both',
    );
  }
  if (file !== undefined && file !== '') {
    const path = isAbsolute(file) ? file : resolve(cwd, file);
    let pin: string;
    try {
      pin = readFileSync(path, 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError('GRANTOR_HSM_PIN_FILE', `cannot read ${path} (${code})`);
    }
    if (pin === '') throw new ConfigError('GRANTOR_HSM_PIN_FILE', `${path} is empty`);
    return { pin, pinSource: `file ${path}` };
  }
  if (env !== undefined && env !== '') return { pin: env, pinSource: 'environment' };
  throw new ConfigError('GRANTOR_HSM_PIN_FILE', 'is required (or GRANTOR_HSM_PIN)');
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
  return {
    applianceId: optional(src, 'GRANTOR_APPLIANCE_ID', 'grantor'),
    listen: parseListen('GRANTOR_LISTEN', optional(src, 'GRANTOR_LISTEN', '127.0.0.1:8443')),
    stateDir: resolve(cwd, optional(src, 'GRANTOR_STATE_DIR', 'var')),
    logLevel: logLevel as AppConfig['logLevel'],
    tpm: { tcti: parseTcti('GRANTOR_TPM_TCTI', required(src, 'GRANTOR_TPM_TCTI')) },
    hsm: {
      module,
      tokenLabel: required(src, 'GRANTOR_HSM_TOKEN_LABEL'),
      ...readPin(src, cwd),
    },
  };
}

/** The configuration as it may be printed or logged: secrets replaced. */
export function redactedConfig(config: AppConfig): unknown {
  return { ...config, hsm: { ...config.hsm, pin: '[redacted]' } };
}
