/**
 * `grantor operators token create|list|revoke`: the operator-token half of the CLI. The
 * lead's cli dispatches `operators ...` here with the rest of argv. The token is printed
 * once, on its own line, and never again (only its hash is stored).
 */
import { GrantorError } from '../shared/errors.js';
import { isRole, ROLES, type Role } from './roles.js';
import type { CreatedToken, OperatorTokens, TokenInfo } from './tokens.js';

/** What the token commands need: the local service (offline) or a client of a running one. */
export interface TokenAdministration {
  create(input: {
    readonly role: Role;
    readonly actor?: string;
    readonly ttlSeconds?: number;
  }): Promise<CreatedToken>;
  list(): Promise<TokenInfo[]>;
  revoke(id: string): Promise<TokenInfo>;
}

export interface CliOutput {
  log(line: string): void;
  error(line: string): void;
}

const USAGE = [
  'usage: grantor operators person add <id> --role <auditor|operator|key_custodian> [--name <display name>]',
  '       grantor operators person list',
  '       grantor operators token create --role <auditor|operator|key_custodian> --actor <person id> [--ttl <90d|12h|30m|seconds>]',
  '       grantor operators token list',
  '       grantor operators token revoke <tok_id>',
  'With GRANTOR_URL and GRANTOR_OPERATOR_TOKEN set, token create|list|revoke go to that running',
  'appliance (create: a token for your own person, without --actor; GRANTOR_URL_CA: its CA PEM file).',
].join('\n');

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text);
  if (m === null) return undefined;
  return Number(m[1]) * (UNIT_SECONDS[m[2] === '' || m[2] === undefined ? 's' : m[2]] ?? 1);
}

function flags(args: readonly string[]): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i];
    const value = args[i + 1];
    if (name === undefined || !name.startsWith('--') || value === undefined) return undefined;
    out.set(name.slice(2), value);
  }
  return out;
}

function status(t: TokenInfo, nowMs: number): string {
  if (t.revokedAt !== undefined) return `revoked ${t.revokedAt}`;
  return Date.parse(t.expiresAt) <= nowMs ? 'expired' : 'active';
}

/**
 * Runs one operators subcommand; resolves to the process exit code. `svc` is the local
 * token service (offline, appliance stopped) or a RemoteTokens client (src/cli/remote-tokens.ts) of
 * a running appliance (`remote`: tokens are then issued to the caller's own person, `--actor` is
 * refused, and `person` needs the offline path).
 */
export async function runOperatorsCli(
  argv: readonly string[],
  svc: OperatorTokens | TokenAdministration,
  out: CliOutput,
  now: () => number = Date.now,
): Promise<number> {
  const [noun, verb, ...rest] = argv;
  const local = 'people' in svc ? svc : undefined;
  if (noun === 'person') {
    if (local !== undefined) return runPersonCli(verb, rest, local, out);
    out.error(
      'the registry changes under dual control on a running appliance: PUT /v1/operators/{id}',
    );
    return 2;
  }
  if (noun !== 'token') {
    out.error(USAGE);
    return 2;
  }
  try {
    switch (verb) {
      case 'create': {
        const f = flags(rest);
        const role = f?.get('role');
        const actor = f?.get('actor');
        const ttlText = f?.get('ttl');
        const ttl = ttlText === undefined ? undefined : parseDuration(ttlText);
        const unknown = [...(f?.keys() ?? [])].filter((k) => !['role', 'actor', 'ttl'].includes(k));
        if (f === undefined || !isRole(role) || unknown.length > 0) {
          out.error(`expected --role (${ROLES.join('|')})\n${USAGE}`);
          return 2;
        }
        // Offline the token names its person; over the API it is always the caller's own.
        if ((local !== undefined) !== (actor !== undefined)) {
          out.error(
            local === undefined
              ? 'over the API a token is issued to your own person: drop --actor'
              : `expected --actor <person id>\n${USAGE}`,
          );
          return 2;
        }
        if (ttlText !== undefined && ttl === undefined) {
          out.error(`bad --ttl "${ttlText}"\n${USAGE}`);
          return 2;
        }
        const options = { role, ...(ttl === undefined ? {} : { ttlSeconds: ttl }) };
        const created =
          'people' in svc
            ? await svc.create({ ...options, actor: actor ?? '' })
            : await svc.create(options);
        out.log(`id:      ${created.info.id}`);
        out.log(`role:    ${created.info.role}`);
        out.log(`person:  ${created.info.person}`);
        out.log(`expires: ${created.info.expiresAt}`);
        out.log('token (shown once; store it now, it cannot be recovered):');
        out.log(created.token);
        return 0;
      }
      case 'list': {
        if (rest.length > 0) {
          out.error(USAGE);
          return 2;
        }
        const t = now();
        for (const info of await svc.list()) {
          out.log([info.id, info.role, info.person, info.expiresAt, status(info, t)].join('\t'));
        }
        return 0;
      }
      case 'revoke': {
        const [id, ...extra] = rest;
        if (id === undefined || extra.length > 0) {
          out.error(USAGE);
          return 2;
        }
        const info = await svc.revoke(id);
        out.log(`revoked ${info.id} (${info.role}, ${info.person})`);
        return 0;
      }
      default:
        out.error(USAGE);
        return 2;
    }
  } catch (e) {
    if (e instanceof GrantorError) {
      out.error(`error: ${e.code}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

/**
 * `person add|list`: the offline bootstrap of the operator registry (appliance stopped).
 * On a running appliance the registry changes only under dual control (PUT
 * /v1/operators/{id}); this path exists for the very first people.
 */
async function runPersonCli(
  verb: string | undefined,
  rest: readonly string[],
  svc: OperatorTokens,
  out: CliOutput,
): Promise<number> {
  try {
    if (verb === 'list' && rest.length === 0) {
      for (const p of await svc.people.list()) {
        const state = p.removedAt === undefined ? 'active' : `removed ${p.removedAt}`;
        out.log([p.id, p.displayName, p.roles.join(','), p.emails.join(','), state].join('\t'));
      }
      return 0;
    }
    const [id, ...flagArgs] = rest;
    const f = flags(flagArgs);
    const role = f?.get('role');
    const unknown = [...(f?.keys() ?? [])].filter((k) => !['role', 'name'].includes(k));
    if (verb !== 'add' || id === undefined || !isRole(role) || unknown.length > 0) {
      out.error(USAGE);
      return 2;
    }
    const person = await svc.people.bootstrap(id, role, f?.get('name'));
    out.log(`${person.id}\t${person.displayName}\t${person.roles.join(',')}`);
    return 0;
  } catch (e) {
    if (e instanceof GrantorError) {
      out.error(`error: ${e.code}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
