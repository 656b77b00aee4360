/**
 * The listener's TLS options. The server presents its certificate; clients may present a
 * certificate (requestCert) but are not refused by TLS without one (rejectUnauthorized
 * false): runtimes and token-bearing operators connect without one. Node sets
 * `socket.authorized` only when the client certificate chains to `ca` (the operator CA),
 * and operatorAuth accepts a certificate only then, and after its own check.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { ConfigError } from '../../shared/errors.js';

export interface TlsConfig {
  /** PEM certificate (chain) of the listener. */
  readonly certFile: string;
  /** PEM private key of the listener. */
  readonly keyFile: string;
  /** PEM operator CA; without it, operators log in with tokens only. */
  readonly operatorCaFile?: string;
}

/** Fastify's `https` option. */
export type HttpsOptions = TlsOptions & SecureContextOptions;

function read(key: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(key, `cannot read ${path} (${code})`);
  }
}

function requirePem(key: string, text: string, label: RegExp): string {
  if (!label.test(text)) throw new ConfigError(key, 'does not hold the expected PEM block');
  return text;
}

/** The operator CA PEM, or undefined when none is configured. */
export function operatorCaPem(config: TlsConfig): string | undefined {
  if (config.operatorCaFile === undefined) return undefined;
  return requirePem(
    'GRANTOR_OPERATOR_CA',
    read('GRANTOR_OPERATOR_CA', config.operatorCaFile),
    /-----BEGIN CERTIFICATE-----/,
  );
}

/** `Fastify({ https: tlsOptions(config), ... })`. */
export function tlsOptions(config: TlsConfig): HttpsOptions {
  const cert = requirePem(
    'GRANTOR_TLS_CERT',
    read('GRANTOR_TLS_CERT', config.certFile),
    /-----BEGIN CERTIFICATE-----/,
  );
  const key = requirePem(
    'GRANTOR_TLS_KEY',
    read('GRANTOR_TLS_KEY', config.keyFile),
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
  );
  const ca = operatorCaPem(config);
  return {
    cert,
    key,
    minVersion: 'TLSv1.2',
    ...(ca === undefined
      ? { requestCert: false }
      : { ca, requestCert: true, rejectUnauthorized: false }),
  };
}

/** The first certificate of a PEM text's notAfter (epoch ms); undefined when unparsable. */
function notAfterMs(pem: string | undefined): number | undefined {
  if (pem === undefined) return undefined;
  try {
    const ms = Date.parse(new X509Certificate(pem).validTo);
    return Number.isNaN(ms) ? undefined : ms;
  } catch {
    return undefined;
  }
}

/**
 * notAfter of the listener's certificate (`server`) and of the operator CA
 * (`operator_ca`), for grantor_tls_certificate_expiry_timestamp_seconds.
 */
export function certificateExpiries(https: HttpsOptions): Record<string, number> {
  const out: Record<string, number> = {};
  const server = notAfterMs(typeof https.cert === 'string' ? https.cert : undefined);
  if (server !== undefined) out.server = server;
  const ca = notAfterMs(typeof https.ca === 'string' ? https.ca : undefined);
  if (ca !== undefined) out.operator_ca = ca;
  return out;
}
