/**
 * `grantor keys list|rotate|retire|destroy`: key ceremonies on the appliance, through the
 * same KeyService as the HTTP routes. Exit codes: 0 done, 1 refused or failed (the error
 * code is printed), 2 usage.
 */
import { GrantorError } from '../shared/errors.js';
import type { KeyService } from './key-service.js';
import type { KeyPurpose, KeyRecord } from './key-store.port.js';

const USAGE = [
  'usage: grantor keys list [--purpose grant|audit] [--json]',
  '       grantor keys rotate [grant|audit]',
  '       grantor keys retire KID [--force]',
  '       grantor keys destroy KID --yes',
];

function line(r: KeyRecord): string {
  const extra = [
    r.retiringAt === undefined ? undefined : `retiring=${r.retiringAt}`,
    r.retiredAt === undefined ? undefined : `retired=${r.retiredAt}`,
    r.destroyedAt === undefined ? undefined : `destroyed=${r.destroyedAt}`,
    r.maxExp === undefined || r.state === 'active'
      ? undefined
      : `lastGrantExpires=${new Date(r.maxExp * 1000).toISOString()}`,
  ].filter((x) => x !== undefined);
  return [r.kid, r.purpose, r.alg, r.state, r.createdAt, r.hsmLabel, ...extra].join('\t');
}

function purposeOf(value: string | undefined): KeyPurpose | undefined {
  return value === 'grant' || value === 'audit' ? value : undefined;
}

export async function runKeysCli(
  argv: readonly string[],
  keys: KeyService,
  out: (line: string) => void,
): Promise<number> {
  const [command, ...rest] = argv;
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  const args = rest.filter((a) => !a.startsWith('--'));
  const usage = (why: string): number => {
    out(`error: ${why}`);
    for (const l of USAGE) out(l);
    return 2;
  };
  try {
    switch (command) {
      case 'list': {
        let purpose: KeyPurpose | undefined;
        const i = rest.indexOf('--purpose');
        if (i >= 0) {
          purpose = purposeOf(rest[i + 1]);
          if (purpose === undefined) return usage('--purpose takes grant or audit');
        }
        const list = keys.list().filter((k) => purpose === undefined || k.purpose === purpose);
        if (flags.has('--json')) {
          out(JSON.stringify(list.map(({ hsmId: _id, ...r }) => r)));
        } else {
          out(['kid', 'purpose', 'alg', 'state', 'created', 'label'].join('\t'));
          for (const r of list) out(line(r));
        }
        return 0;
      }
      case 'rotate': {
        const purpose = args.length === 0 ? 'grant' : purposeOf(args[0]);
        if (purpose === undefined || args.length > 1) return usage('rotate takes grant or audit');
        const { active, previous } = await keys.rotate(purpose, 'on_demand');
        out(`active\t${line(active)}`);
        if (previous !== undefined) out(`previous\t${line(previous)}`);
        return 0;
      }
      case 'retire': {
        const [kid] = args;
        if (kid === undefined || args.length > 1) return usage('retire takes one KID');
        out(line(await keys.retire(kid, { force: flags.has('--force') })));
        return 0;
      }
      case 'destroy': {
        const [kid] = args;
        if (kid === undefined || args.length > 1) return usage('destroy takes one KID');
        // Destroying an HSM key cannot be undone: it takes an explicit confirmation.
        if (!flags.has('--yes')) return usage('destroy is irreversible; add --yes to confirm');
        out(line(await keys.destroy(kid)));
        return 0;
      }
      default:
        return usage(command === undefined ? 'missing command' : `unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof GrantorError) {
      out(`error: ${e.code}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
