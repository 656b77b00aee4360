/**
 * The `grantor-gateway` configuration file (JSON), checked whole at start: every problem
 * names its field (`routes[1].resource: ...`) and the gateway does not start. The gateway's
 * token is a secret and never sits in this file: it comes from `appliance.gatewayTokenFile`
 * or the environment (`GRANTOR_GATEWAY_TOKEN`).
 */
import { ConfigError, RouteTable, type GrantPresentation } from '../gateway/index.js';

export interface GatewayLimits {
  /** Largest request head (request line and headers), bytes. Default 16384. */
  readonly maxHeaderBytes: number;
  /** Largest request body, bytes (bodies are read whole to be digested). Default 1 MiB. */
  readonly maxBodyBytes: number;
  /** Deadline for a client to send its whole request. Default 30000. */
  readonly clientTimeoutMs: number;
  /** Deadline for the upstream to answer, and longest silence while it streams. Default 30000. */
  readonly upstreamTimeoutMs: number;
}

export interface GatewayProxyConfig {
  readonly listen: { readonly host: string; readonly port: number };
  /** Where authorised requests go (http or https base URL), or absent for auth_request only. */
  readonly upstream: URL | undefined;
  readonly appliance: {
    readonly url: string;
    readonly issuer: string;
    readonly audience: string;
    readonly jwksUrl: string | undefined;
    readonly gatewayTokenFile: string | undefined;
  };
  readonly presentation: Required<GrantPresentation>;
  readonly limits: GatewayLimits;
  /** Path of the nginx `auth_request` endpoint, or absent (off). */
  readonly authRequestPath: string | undefined;
  /** Path where runtimes get proof-of-possession challenges (POST). */
  readonly popChallengePath: string;
  /** Path of the Prometheus metrics (GET), or absent (off). */
  readonly metricsPath: string | undefined;
  /**
   * Follow the appliance's revocation feed (docs/protocol.md §3.1) and refuse every grant
   * while the view is older than `maxStalenessSeconds`; absent: redemption alone decides.
   */
  readonly revocations:
    { readonly maxStalenessSeconds: number; readonly waitSeconds: number } | undefined;
  /**
   * A header that names the client (e.g. `x-real-ip` set by nginx). Only for a gateway
   * reachable by that proxy alone: whoever can reach it can claim any client.
   */
  readonly clientAddressHeader: string | undefined;
  readonly routes: RouteTable;
}

const HEADER = /^[a-z0-9-]{1,64}$/;
const PATH = /^\/[A-Za-z0-9._~\-/]{0,255}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(value: Record<string, unknown>, at: string, keys: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key))
      throw new ConfigError(`${at}${key}`, `is not one of ${keys.join(', ')}`);
  }
}

function text(v: unknown, key: string, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || v === '') throw new ConfigError(key, 'must be a non-empty string');
  return v;
}

function int(v: unknown, key: string, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `must be an integer in [${min}, ${max}]`);
  }
  return v;
}

function header(v: unknown, key: string, fallback: string): string {
  const h = text(v, key, fallback).toLowerCase();
  if (!HEADER.test(h)) throw new ConfigError(key, 'must be a header name');
  return h;
}

function path(v: unknown, key: string, fallback: string | undefined): string | undefined {
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !PATH.test(v))
    throw new ConfigError(key, 'must be an absolute path');
  return v;
}

function url(v: unknown, key: string): URL {
  let u: URL;
  try {
    u = new URL(text(v, key));
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(key, 'is not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ConfigError(key, 'must be http(s)');
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new ConfigError(key, 'must have no query, fragment or credentials');
  }
  return u;
}

function revocationsOf(v: unknown): GatewayProxyConfig['revocations'] {
  if (v === undefined) return undefined;
  if (!isRecord(v)) throw new ConfigError('revocations', 'must be an object');
  only(v, 'revocations.', ['maxStalenessSeconds', 'waitSeconds']);
  const waitSeconds = int(v.waitSeconds, 'revocations.waitSeconds', 25, 0, 60);
  const maxStalenessSeconds = int(
    v.maxStalenessSeconds,
    'revocations.maxStalenessSeconds',
    60,
    1,
    86_400,
  );
  // A long-poll counts from when it was sent: a bound not above the wait refuses every grant.
  if (maxStalenessSeconds <= waitSeconds) {
    throw new ConfigError('revocations.maxStalenessSeconds', 'must be more than waitSeconds');
  }
  return { maxStalenessSeconds, waitSeconds };
}

/** Checks a parsed configuration file. Throws ConfigError naming the field. */
export function parseGatewayConfig(value: unknown): GatewayProxyConfig {
  if (!isRecord(value)) throw new ConfigError('config', 'must be a JSON object');
  only(value, '', [
    'listen',
    'upstream',
    'appliance',
    'presentation',
    'limits',
    'authRequestPath',
    'popChallengePath',
    'metricsPath',
    'revocations',
    'clientAddressHeader',
    'routes',
  ]);
  const listen = value.listen ?? {};
  if (!isRecord(listen)) throw new ConfigError('listen', 'must be an object');
  only(listen, 'listen.', ['host', 'port']);
  const appliance = value.appliance;
  if (!isRecord(appliance)) throw new ConfigError('appliance', 'must be an object');
  only(appliance, 'appliance.', ['url', 'issuer', 'audience', 'jwksUrl', 'gatewayTokenFile']);
  const presentation = value.presentation ?? {};
  if (!isRecord(presentation)) throw new ConfigError('presentation', 'must be an object');
  only(presentation, 'presentation.', ['grantHeader', 'grantScheme', 'popHeader', 'requirePop']);
  const limits = value.limits ?? {};
  if (!isRecord(limits)) throw new ConfigError('limits', 'must be an object');
  only(limits, 'limits.', [
    'maxHeaderBytes',
    'maxBodyBytes',
    'clientTimeoutMs',
    'upstreamTimeoutMs',
  ]);

  const requirePop = presentation.requirePop ?? true;
  if (typeof requirePop !== 'boolean')
    throw new ConfigError('presentation.requirePop', 'must be a boolean');
  const scheme = presentation.grantScheme ?? 'Grant';
  if (typeof scheme !== 'string' || !/^[A-Za-z-]{0,32}$/.test(scheme)) {
    throw new ConfigError('presentation.grantScheme', 'must be a word (or "" for none)');
  }
  const authRequestPath = path(value.authRequestPath, 'authRequestPath', undefined);
  const popChallengePath =
    path(value.popChallengePath, 'popChallengePath', '/grantor/pop/challenge') ?? '';
  const metricsPath = path(value.metricsPath, 'metricsPath', undefined);
  const upstream = value.upstream === undefined ? undefined : url(value.upstream, 'upstream');
  if (upstream === undefined && authRequestPath === undefined) {
    throw new ConfigError('upstream', 'is required unless authRequestPath is set');
  }
  const config: GatewayProxyConfig = {
    listen: {
      host: text(listen.host, 'listen.host', '127.0.0.1'),
      port: int(listen.port, 'listen.port', 9080, 0, 65_535),
    },
    upstream,
    appliance: {
      url: url(appliance.url, 'appliance.url').toString(),
      issuer: text(appliance.issuer, 'appliance.issuer'),
      audience: text(appliance.audience, 'appliance.audience'),
      jwksUrl:
        appliance.jwksUrl === undefined
          ? undefined
          : url(appliance.jwksUrl, 'appliance.jwksUrl').toString(),
      gatewayTokenFile:
        appliance.gatewayTokenFile === undefined
          ? undefined
          : text(appliance.gatewayTokenFile, 'appliance.gatewayTokenFile'),
    },
    presentation: {
      grantHeader: header(presentation.grantHeader, 'presentation.grantHeader', 'authorization'),
      grantScheme: scheme,
      popHeader: header(presentation.popHeader, 'presentation.popHeader', 'grant-pop'),
      requirePop,
    },
    limits: {
      maxHeaderBytes: int(limits.maxHeaderBytes, 'limits.maxHeaderBytes', 16_384, 1024, 1_048_576),
      maxBodyBytes: int(limits.maxBodyBytes, 'limits.maxBodyBytes', 1_048_576, 0, 67_108_864),
      clientTimeoutMs: int(limits.clientTimeoutMs, 'limits.clientTimeoutMs', 30_000, 100, 600_000),
      upstreamTimeoutMs: int(
        limits.upstreamTimeoutMs,
        'limits.upstreamTimeoutMs',
        30_000,
        100,
        600_000,
      ),
    },
    authRequestPath,
    popChallengePath,
    metricsPath,
    revocations: revocationsOf(value.revocations),
    clientAddressHeader:
      value.clientAddressHeader === undefined
        ? undefined
        : header(value.clientAddressHeader, 'clientAddressHeader', ''),
    routes: RouteTable.parse(value.routes),
  };
  if (config.presentation.grantHeader === config.presentation.popHeader) {
    throw new ConfigError('presentation.popHeader', 'must differ from grantHeader');
  }
  if (authRequestPath !== undefined && authRequestPath === popChallengePath) {
    throw new ConfigError('authRequestPath', 'must differ from popChallengePath');
  }
  if (
    metricsPath !== undefined &&
    (metricsPath === popChallengePath || metricsPath === authRequestPath)
  ) {
    throw new ConfigError('metricsPath', 'must differ from popChallengePath and authRequestPath');
  }
  return config;
}
