/**
 * Why the appliance could not start, in words an operator acts on: the component, the
 * error code, and the cause with the configuration key and the path or address it names
 * (the PKCS#11 module and its loader error, "no token labelled X", the TPM's host:port
 * refusing connections, the policy file and line that does not parse, a missing EK CA
 * file). Shown in the start-up log line and in `/readyz` (src/http/server.ts) and by
 * `grantor doctor`. Never carries a PIN, a token or owner auth: it is built from error
 * messages, codes and configuration paths only.
 */
import { connect } from 'node:net';
import type { AppConfig } from './shared/config.js';
import { ConfigError, GrantorError, type ErrorCode } from './shared/errors.js';

export interface StartupFailure {
  /** The component `/readyz` names: `tpm`, `hsm`, `audit`, `policy`, `attestation`, `config`. */
  readonly component: string;
  /** A 503 code every other route fails closed with. */
  readonly code: ErrorCode;
  /** One line for people: what failed and where. */
  readonly cause: string;
}

function errnoCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || !('code' in e)) return undefined;
  const code = e.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** host and port of a socket TCTI (`swtpm:` / `mssim:`), if it is one. */
export function socketOfTcti(tcti: string): { host: string; port: number } | undefined {
  const m = /^(swtpm|mssim):(.*)$/.exec(tcti);
  if (m === null) return undefined;
  const conf = m[2] ?? '';
  const fields = new Map(
    conf
      .split(',')
      .map((kv) => kv.split('=', 2))
      .filter((kv): kv is [string, string] => kv.length === 2),
  );
  const port = Number(fields.get('port') ?? '2321');
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  return { host: fields.get('host') ?? 'localhost', port };
}

/** Whether something listens at host:port; resolves the socket error's code otherwise. */
export function tcpConnectError(
  host: string,
  port: number,
  timeoutMs = 2000,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: string | undefined): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => {
      done('ETIMEDOUT');
    });
    socket.once('connect', () => {
      done(undefined);
    });
    socket.once('error', (e) => {
      done(errnoCode(e) ?? 'connection failed');
    });
  });
}

const WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'no answer',
  EHOSTUNREACH: 'host unreachable',
  ENOTFOUND: 'unknown host',
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
};

/** What reaching the TPM named by `tcti` says, for people. */
export async function describeTpmReach(tcti: string): Promise<string | undefined> {
  const socket = socketOfTcti(tcti);
  if (socket === undefined) return undefined;
  const code = await tcpConnectError(socket.host, socket.port);
  return code === undefined ? undefined : `${socket.host}:${socket.port} ${WORDS[code] ?? code}`;
}

/** The HSM configuration an error most likely came from (the audit token's when it says so). */
function hsmOf(
  config: AppConfig,
  e: GrantorError,
): { module: string; tokenLabel: string; keys: string } {
  const label = e.details?.tokenLabel;
  const loader = e.cause === undefined ? '' : messageOf(e.cause);
  const audit = config.auditHsm;
  if (
    audit !== undefined &&
    ((typeof label === 'string' && label === audit.tokenLabel && label !== config.hsm.tokenLabel) ||
      (loader.includes(audit.module) && !loader.includes(config.hsm.module)))
  ) {
    return {
      module: audit.module,
      tokenLabel: audit.tokenLabel,
      keys: 'GRANTOR_AUDIT_PKCS11_MODULE / GRANTOR_AUDIT_HSM_TOKEN_LABEL',
    };
  }
  return {
    module: config.hsm.module,
    tokenLabel: config.hsm.tokenLabel,
    keys: 'GRANTOR_PKCS11_MODULE / GRANTOR_HSM_TOKEN_LABEL',
  };
}

function componentOfKey(key: string): string {
  if (key.startsWith('GRANTOR_POLICY')) return 'policy';
  if (/^(GRANTOR_(EK_CA|ENROLLMENT|REFERENCE)|enrollmentRules|referencePolicies)/.test(key))
    return 'attestation';
  if (key.startsWith('GRANTOR_AUDIT')) return 'audit';
  return 'config';
}

/** The component a start-up failure's code names. */
export function componentOfCode(code: string): string {
  return /^(tpm|hsm|audit|policy)_/.exec(code)?.[1] ?? 'appliance';
}

/**
 * The cause of a failed `openAppliance`, or `undefined` for an error that is a bug rather
 * than a state of the hardware or the configuration (the caller rethrows it).
 */
export async function describeStartupFailure(
  e: unknown,
  config: AppConfig,
): Promise<StartupFailure | undefined> {
  if (e instanceof ConfigError) {
    return { component: componentOfKey(e.key), code: 'not_ready', cause: e.message };
  }
  if (!(e instanceof GrantorError)) return undefined;
  if (e.code === 'policy_set_invalid') {
    const root = e.cause === undefined ? '' : ` (${errnoCode(e.cause) ?? messageOf(e.cause)})`;
    return {
      component: 'policy',
      code: 'policy_unavailable',
      cause: `GRANTOR_POLICY_DIR ${config.policy.dir}: ${e.message}${root}`,
    };
  }
  const component = componentOfCode(e.code);
  if (component === 'tpm') {
    const reach = await describeTpmReach(config.tpm.tcti);
    return {
      component,
      code: e.code,
      cause: `GRANTOR_TPM_TCTI ${config.tpm.tcti}: ${reach ?? e.message}`,
    };
  }
  if (component === 'hsm') {
    const hsm = hsmOf(config, e);
    // findTokenSlot (src/keys/token.pkcs11.ts) counts the tokens that carry the label.
    const count = e.details?.tokensWithLabel;
    if (typeof count === 'number') {
      const many = count > 1;
      return {
        component,
        code: e.code,
        cause: `${hsm.keys}: ${many ? 'more than one token' : 'no token'} labelled "${hsm.tokenLabel}" in ${hsm.module}`,
      };
    }
    const loader = e.cause === undefined ? '' : `: ${messageOf(e.cause)}`;
    const rv = typeof e.details?.rv === 'string' ? ` (${e.details.rv})` : '';
    return {
      component,
      code: e.code,
      cause: `${hsm.keys} ${hsm.module}: ${e.message}${loader}${rv}`,
    };
  }
  return { component, code: e.code, cause: e.message };
}

/**
 * A configuration file read at start that is missing or unreadable, as a ConfigError naming
 * its key and the path (`paths`: the configured value, when the error names no path).
 */
export function fileConfigError(key: string, paths: readonly string[], e: unknown): GrantorError {
  if (e instanceof GrantorError) return e;
  const code = errnoCode(e);
  const named = typeof e === 'object' && e !== null && 'path' in e ? e.path : undefined;
  const path = typeof named === 'string' ? named : paths.join(',');
  return new ConfigError(
    key,
    `cannot read ${path}: ${code === undefined ? messageOf(e) : (WORDS[code] ?? code)}`,
  );
}
