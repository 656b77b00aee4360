/**
 * The CLI as a client of a running appliance: where it is and how to log in come from
 * flags, then GRANTOR_URL / GRANTOR_URL_CA / GRANTOR_OPERATOR_TOKEN, then a profile file
 * (`--profile`, $GRANTOR_PROFILE, or ~/.config/grantor/profile.json):
 *   { "url": "https://host:8443", "cacert": "server-ca.pem",
 *     "cert": "auditor.pem", "key": "auditor.key" }      (mutual TLS), or
 *   { "url": ..., "cacert": ..., "tokenFile": "token" }  (bearer token)
 * Relative paths are relative to the profile's folder. The token is only ever sent in the
 * Authorization header over https (or http to loopback, which is all the appliance serves
 * over plain http); it is never printed, and a token file or a profile holding a token
 * must not be readable by others.
 */
import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { isErrorCode } from '../shared/error-codes.js';
import { GrantorError } from '../shared/errors.js';
import { stringOption, flag, type Parsed } from './args.js';
import type { Command } from './commands.js';
import { table, type Io } from './io.js';

export interface Connection {
  readonly url: URL;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly token?: string;
}

/** A remote setting that does not work: names the flag, variable or profile field. */
export class RemoteConfigError extends GrantorError {
  constructor(message: string) {
    super('remote_config_invalid', message);
  }
}

interface Profile {
  readonly url?: string;
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly token?: string;
  readonly tokenFile?: string;
}

const PROFILE_FIELDS = new Set(['url', 'cacert', 'cert', 'key', 'token', 'tokenFile']);

function defaultProfilePath(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.config');
  return join(base, 'grantor', 'profile.json');
}

/** Refuses a secret file other users can read (a token must stay the caller's). */
function privateFile(path: string, what: string): void {
  const mode = statSync(path).mode;
  if ((mode & 0o077) !== 0) {
    throw new RemoteConfigError(
      `${what} ${path} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
    );
  }
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw new RemoteConfigError(
      `${what}: cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`,
    );
  }
}

function loadProfile(path: string, explicit: boolean): { profile: Profile; dir: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (!explicit && (e as { code?: unknown }).code === 'ENOENT') return { profile: {}, dir: '' };
    throw new RemoteConfigError(`profile ${path}: cannot read it`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RemoteConfigError(`profile ${path}: not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new RemoteConfigError(`profile ${path}: not a JSON object`);
  }
  for (const [k, v] of Object.entries(parsed)) {
    if (!PROFILE_FIELDS.has(k))
      throw new RemoteConfigError(`profile ${path}: unknown field "${k}"`);
    if (typeof v !== 'string')
      throw new RemoteConfigError(`profile ${path}: "${k}" is not a string`);
  }
  const profile = parsed as Profile;
  if (profile.token !== undefined) privateFile(path, 'profile with a token');
  return { profile, dir: dirname(path) };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Where the appliance is and how to log in, from flags, environment and profile. */
export function connectionFrom(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Connection {
  const explicitProfile = stringOption(parsed, 'profile') ?? env.GRANTOR_PROFILE;
  const profilePath =
    explicitProfile !== undefined && explicitProfile !== ''
      ? resolvePath(explicitProfile)
      : defaultProfilePath(env);
  const { profile, dir } = loadProfile(
    profilePath,
    explicitProfile !== undefined && explicitProfile !== '',
  );
  const fromProfile = (p: string | undefined): string | undefined =>
    p === undefined ? undefined : isAbsolute(p) ? p : join(dir, p);
  const nonEmpty = (v: string | undefined): string | undefined => (v === '' ? undefined : v);

  const urlText = stringOption(parsed, 'url') ?? nonEmpty(env.GRANTOR_URL) ?? profile.url;
  if (urlText === undefined) {
    throw new RemoteConfigError(
      `no appliance named: give --url, GRANTOR_URL or a profile (${profilePath})`,
    );
  }
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new RemoteConfigError('--url: not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new RemoteConfigError('--url: must be https:// (or http:// on loopback)');
  }
  if (url.username !== '' || url.password !== '') {
    throw new RemoteConfigError('--url: credentials do not go in the URL; use --token or --cert');
  }
  const caFile =
    stringOption(parsed, 'cacert') ?? nonEmpty(env.GRANTOR_URL_CA) ?? fromProfile(profile.cacert);
  const certFile = stringOption(parsed, 'cert') ?? fromProfile(profile.cert);
  const keyFile = stringOption(parsed, 'key') ?? fromProfile(profile.key);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new RemoteConfigError('--cert and --key go together');
  }
  let token =
    stringOption(parsed, 'token') ?? nonEmpty(env.GRANTOR_OPERATOR_TOKEN) ?? profile.token;
  const tokenFile = fromProfile(profile.tokenFile);
  if (token === undefined && tokenFile !== undefined) {
    privateFile(tokenFile, 'token file');
    token = readText(tokenFile, 'tokenFile').trim();
  }
  if (token !== undefined && url.protocol === 'http:' && !isLoopback(url.hostname)) {
    throw new RemoteConfigError('--url: a token is only sent over https (or http on loopback)');
  }
  return {
    url,
    ...(caFile === undefined ? {} : { ca: readText(caFile, 'cacert') }),
    ...(certFile === undefined ? {} : { cert: readText(certFile, 'cert') }),
    ...(keyFile === undefined ? {} : { key: readText(keyFile, 'key') }),
    ...(token === undefined ? {} : { token }),
  };
}

export interface Answer {
  readonly status: number;
  readonly body: unknown;
}

/**
 * One HTTP(S) call to the appliance; the token only in the Authorization header. A POST
 * sends `body` as JSON (`{}` when there is none).
 */
export function call(
  conn: Connection,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 15_000,
): Promise<Answer> {
  const url = new URL(path, conn.url);
  const payload = method === 'POST' ? JSON.stringify(body ?? {}) : undefined;
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        headers: {
          accept: 'application/json',
          ...(conn.token === undefined ? {} : { authorization: `Bearer ${conn.token}` }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(conn.ca === undefined ? {} : { ca: conn.ca }),
        ...(conn.cert === undefined ? {} : { cert: conn.cert }),
        ...(conn.key === undefined ? {} : { key: conn.key }),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = null;
          try {
            body = text === '' ? null : JSON.parse(text);
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error(`no answer from ${conn.url.origin} within ${timeoutMs} ms`));
    });
    req.on('error', (e: Error & { code?: string }) => {
      reject(unreachable(conn, e));
    });
    req.end(payload);
  });
}

/** OpenSSL's codes for a server certificate that does not verify against the CA given. */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
]);

/**
 * A request that got no answer, as `remote_unreachable`. Node's own messages name the
 * address and the TLS problem, never the headers (the token is never in them); a server
 * certificate the CA does not vouch for says which setting names the CA.
 */
export function unreachable(conn: Connection, e: Error & { code?: string }): GrantorError {
  const hint =
    e.code !== undefined && UNTRUSTED_CERTIFICATE.has(e.code)
      ? ": the server's certificate does not verify against the CA given (--cacert, GRANTOR_URL_CA or the profile's cacert)"
      : '';
  return new GrantorError(
    'remote_unreachable',
    `${conn.url.origin}: ${e.code === undefined ? e.message : `${e.code}: ${e.message}`}${hint}`,
  );
}

/**
 * The appliance's refusal as a GrantorError with its code (the message names the status). A
 * code this CLI does not know (a newer appliance) is `remote_error`, the message naming it.
 */
export function errorOf(answer: Answer): GrantorError {
  const e = (answer.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const wire = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : 'the appliance refused';
  if (wire !== undefined && isErrorCode(wire)) {
    return new GrantorError(wire, `${message} (HTTP ${answer.status})`);
  }
  const named = wire === undefined ? '' : `${wire}: `;
  return new GrantorError('remote_error', `${named}${message} (HTTP ${answer.status})`);
}

async function expectOk(conn: Connection, method: string, path: string): Promise<unknown> {
  const answer = await call(conn, method, path);
  if (answer.status < 200 || answer.status >= 300) throw errorOf(answer);
  return answer.body;
}

type Row = Record<string, unknown>;

function cell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.map(cell).join(',');
  return Object.entries(v as Row)
    .map(([k, x]) => `${k}=${cell(x)}`)
    .join(',');
}

function rows(list: unknown, columns: readonly string[]): string[][] {
  return (Array.isArray(list) ? (list as Row[]) : []).map((r) => columns.map((c) => cell(r[c])));
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

function pathId(id: string | undefined): string {
  return encodeURIComponent(id ?? '');
}

/** Runs one remote command; tables for people, `--json` for scripts. */
export async function runRemote(command: Command, parsed: Parsed, io: Io): Promise<number> {
  const conn = connectionFrom(parsed);
  const asJson = flag(parsed, 'json');
  const print = (body: unknown, render: () => string[]): void => {
    if (asJson) io.out(JSON.stringify(body, null, 2));
    else for (const l of render()) io.out(l);
  };
  const key = command.path.join(' ');
  const id = parsed.positionals[0];
  switch (key) {
    case 'status': {
      const answer = await call(conn, 'GET', '/readyz');
      const body = answer.body as {
        status?: string;
        checks?: Record<string, { ok: boolean; reason?: string }>;
        error?: {
          code?: string;
          details?: { checks?: Record<string, { ok: boolean; reason?: string }> };
        };
      } | null;
      const checks = body?.checks ?? body?.error?.details?.checks;
      if (checks === undefined) throw errorOf(answer);
      const ready = answer.status === 200;
      print(body, () => [
        `${conn.url.origin}: ${ready ? 'ready' : `NOT READY (${body?.error?.code ?? answer.status})`}`,
        ...table(
          ['component', 'state', 'reason'],
          Object.entries(checks).map(([name, r]) => [name, r.ok ? 'ok' : 'DOWN', r.reason ?? '']),
        ),
      ]);
      return ready ? 0 : 1;
    }
    case 'runtimes list': {
      const body = (await expectOk(
        conn,
        'GET',
        `/v1/runtimes${query({ state: stringOption(parsed, 'state'), limit: stringOption(parsed, 'limit') })}`,
      )) as { runtimes?: unknown; nextCursor?: unknown };
      print(body, () => [
        ...table(
          ['runtime', 'name', 'state', 'labels', 'ekCertified'],
          rows(body.runtimes, ['runtimeId', 'name', 'state', 'labels', 'ekCertified']),
        ),
        ...(typeof body.nextCursor === 'string'
          ? [`(more: the API's ?after=${body.nextCursor})`]
          : []),
      ]);
      return 0;
    }
    case 'runtimes show':
    case 'approvals show': {
      const base = key === 'runtimes show' ? '/v1/runtimes/' : '/v1/approvals/';
      const body = (await expectOk(conn, 'GET', `${base}${pathId(id)}`)) as Row;
      print(body, () =>
        table(
          ['field', 'value'],
          Object.entries(body).map(([k, v]) => [k, cell(v)]),
        ),
      );
      return 0;
    }
    case 'keys list': {
      const body = (await expectOk(
        conn,
        'GET',
        `/v1/keys${query({ purpose: stringOption(parsed, 'purpose') })}`,
      )) as { keys?: unknown };
      print(body, () =>
        table(
          ['kid', 'purpose', 'alg', 'state', 'created'],
          rows(body.keys, ['kid', 'purpose', 'alg', 'state', 'createdAt']),
        ),
      );
      return 0;
    }
    case 'approvals list': {
      const body = (await expectOk(
        conn,
        'GET',
        `/v1/approvals${query({ limit: stringOption(parsed, 'limit') })}`,
      )) as { approvals?: unknown };
      print(body, () =>
        table(
          ['id', 'act', 'params', 'requested by', 'approvals', 'expires', 'consumed'],
          (Array.isArray(body.approvals) ? (body.approvals as Row[]) : []).map((a) => [
            cell(a.id),
            cell(a.act),
            cell(a.params),
            cell(a.requestedBy),
            String(Array.isArray(a.approvals) ? a.approvals.length : 0),
            cell(a.expiresAt),
            cell(a.consumedAt),
          ]),
        ),
      );
      return 0;
    }
    case 'policy show':
    case 'policy reload': {
      const body = (await expectOk(
        conn,
        key === 'policy show' ? 'GET' : 'POST',
        key === 'policy show' ? '/v1/policy' : '/v1/policy/reload',
      )) as Row;
      print(body, () =>
        table(
          ['field', 'value'],
          Object.entries(body).map(([k, v]) => [k, cell(v)]),
        ),
      );
      return 0;
    }
    case 'audit entries': {
      const body = (await expectOk(
        conn,
        'GET',
        `/v1/audit/entries${query({ from: stringOption(parsed, 'from'), limit: stringOption(parsed, 'limit') })}`,
      )) as { entries?: unknown };
      print(body, () =>
        table(
          ['seq', 'time', 'type', 'subject', 'decision'],
          rows(body.entries, ['seq', 'time', 'type', 'subject', 'decision']),
        ),
      );
      return 0;
    }
    case 'audit export': {
      const { remoteExport } = await import('./remote-export.js');
      return remoteExport(conn, parsed, io);
    }
    case 'audit checkpoint': {
      const body = (await expectOk(conn, 'GET', '/v1/audit/checkpoint')) as Row;
      print(body, () => {
        const note = body.note;
        return typeof note === 'string' ? note.trimEnd().split('\n') : [cell(body)];
      });
      return 0;
    }
    case 'audit watch': {
      const { runAuditWatch } = await import('./audit-watch.js');
      return runAuditWatch(conn, parsed, io);
    }
    default:
      throw new RemoteConfigError(`${key}: not a remote command`);
  }
}
