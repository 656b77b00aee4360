/**
 * Rules over verified boot events (the `measuredBoot` policy member): Secure Boot state,
 * PK/KEK/db/dbx contents, boot applications and drivers, the kernel command line. Each
 * violation names the offending event: PCR, index in the log, type and its digest in the
 * policy's bank. A rule reads an event's data only where the data is what was hashed into
 * the PCR (`event_data_mismatch` otherwise): the digest is bound to the quote, the data is
 * only bound to the digest.
 */
import { createHash } from 'node:crypto';
import type { HashName } from '../../tpm/marshal/constants.js';
import { EV, eventTypeName } from './event-types.js';
import { bankByName } from './hashes.js';
import type { MeasuredBootPolicy, SignatureDbName } from './policy.js';
import { evaluateShimRules } from './shim-rules.js';
import type { TcgEvent } from './tcg-log.js';
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  parseSignatureLists,
  parseUefiVariable,
  type UefiVariable,
} from './uefi.js';

/** One reason an attestation is untrusted; `detail` names the event or entry. */
export interface MeasuredBootViolation {
  readonly code: string;
  readonly detail: string;
}

export function describeEvent(e: TcgEvent, bank: HashName): string {
  const id = bankByName(bank)?.id;
  const digest = id === undefined ? undefined : e.digests.get(id);
  const d = digest === undefined ? '' : ` ${bank}=${digest.toString('hex')}`;
  return `pcr=${e.pcr} event=${e.index} type=${eventTypeName(e.type)}${d}`;
}

/** The violations a rule pass finds, and `v` to add one naming its event. */
export function violationList(bank: HashName): {
  readonly out: MeasuredBootViolation[];
  readonly v: (code: string, e: TcgEvent, extra?: string) => void;
} {
  const out: MeasuredBootViolation[] = [];
  return {
    out,
    v: (code, e, extra = '') => {
      out.push({ code, detail: `${describeEvent(e, bank)}${extra}` });
    },
  };
}

/** Whether the event's digest in `bank` is the hash of one of `candidates`. */
function digestCovers(e: TcgEvent, bank: HashName, candidates: readonly Buffer[]): boolean {
  const b = bankByName(bank);
  const digest = b === undefined ? undefined : e.digests.get(b.id);
  if (b === undefined || digest === undefined) return false;
  return candidates.some((c) => createHash(b.node).update(c).digest().equals(digest));
}

/** A PCR 7 event's UEFI variable, read where the event's digest covers it. */
export interface MeasuredVariable {
  readonly event: TcgEvent;
  readonly variable: UefiVariable;
}

/**
 * The UEFI variables of the PCR 7 events of `type` whose digest in `bank` is the hash of the
 * event data or of the variable's data; an event that does not parse or is not covered is
 * reported to `violation` (event_data_malformed, event_data_mismatch) and left out.
 */
export function measuredVariables(
  events: readonly TcgEvent[],
  type: number,
  bank: HashName,
  violation: (code: string, e: TcgEvent, extra?: string) => void,
): MeasuredVariable[] {
  const out: MeasuredVariable[] = [];
  for (const e of events) {
    if (e.pcr !== 7 || e.type !== type) continue;
    let variable: UefiVariable;
    try {
      variable = parseUefiVariable(e.data);
    } catch {
      violation('event_data_malformed', e);
      continue;
    }
    if (!digestCovers(e, bank, [e.data, variable.data])) {
      violation('event_data_mismatch', e, ` variable=${JSON.stringify(variable.name)}`);
      continue;
    }
    out.push({ event: e, variable });
  }
  return out;
}

const VARIABLES: Record<SignatureDbName, { guid: string; name: string }> = {
  pk: { guid: EFI_GLOBAL_VARIABLE, name: 'PK' },
  kek: { guid: EFI_GLOBAL_VARIABLE, name: 'KEK' },
  db: { guid: EFI_IMAGE_SECURITY_DATABASE, name: 'db' },
  dbx: { guid: EFI_IMAGE_SECURITY_DATABASE, name: 'dbx' },
};

const APPLICATIONS: ReadonlySet<number> = new Set([
  EV.EFI_BOOT_SERVICES_APPLICATION,
  EV.EFI_BOOT_SERVICES_DRIVER,
  EV.EFI_RUNTIME_SERVICES_DRIVER,
]);

export function evaluateBootRules(
  policy: MeasuredBootPolicy,
  events: readonly TcgEvent[],
  bank: HashName,
): MeasuredBootViolation[] {
  const { out, v } = violationList(bank);

  // The Secure Boot configuration (PCR 7): each variable's data must be what was hashed.
  const needVariables = policy.secureBoot === true || policy.signatureDbs.size > 0;
  const variables = new Map(
    (needVariables ? measuredVariables(events, EV.EFI_VARIABLE_DRIVER_CONFIG, bank, v) : []).map(
      (m) => [`${m.variable.guid}/${m.variable.name}`, m],
    ),
  );

  if (policy.secureBoot === true) {
    const sb = variables.get(`${EFI_GLOBAL_VARIABLE}/SecureBoot`);
    if (sb === undefined)
      out.push({ code: 'secure_boot_unmeasured', detail: 'pcr=7 variable="SecureBoot"' });
    else if (sb.variable.data.length !== 1 || sb.variable.data[0] !== 1)
      v('secure_boot_disabled', sb.event);
  }

  for (const [name, rule] of policy.signatureDbs) {
    const { guid, name: varName } = VARIABLES[name];
    const found = variables.get(`${guid}/${varName}`);
    if (found === undefined) {
      out.push({
        code: 'signature_db_unmeasured',
        detail: `pcr=7 variable=${JSON.stringify(varName)}`,
      });
      continue;
    }
    let ids: Set<string>;
    try {
      ids = new Set(parseSignatureLists(found.variable.data).map((s) => s.id));
    } catch {
      v('event_data_malformed', found.event, ` variable=${JSON.stringify(varName)}`);
      continue;
    }
    for (const id of ids) {
      if (rule.forbid.has(id)) v('signature_db_entry_forbidden', found.event, ` ${name}=${id}`);
      else if (rule.allow !== undefined && !rule.allow.has(id))
        v('signature_db_entry_not_allowed', found.event, ` ${name}=${id}`);
    }
    for (const id of rule.require)
      if (!ids.has(id)) v('signature_db_entry_missing', found.event, ` ${name}=${id}`);
  }

  const apps = policy.bootApplications;
  if (apps !== undefined) {
    const id = bankByName(bank)?.id;
    for (const e of events) {
      if (!APPLICATIONS.has(e.type) || id === undefined) continue;
      const digest = e.digests.get(id)?.toString('hex');
      if (digest === undefined || !apps.has(digest)) v('boot_application_not_allowed', e);
    }
  }

  if (policy.kernelCmdline !== undefined)
    out.push(...cmdlineRules(policy.kernelCmdline, events, bank, v));
  out.push(...evaluateShimRules(policy, events, bank));
  return out;
}

const GRUB_PREFIXES = ['kernel_cmdline: ', 'kernel_cmdline '];

/** The command line an EV_IPL event carries, if it is one and its digest covers it. */
function kernelCmdline(
  e: TcgEvent,
  bank: HashName,
): { text: string; verified: boolean } | undefined {
  if (e.type !== EV.IPL) return undefined;
  const latin = e.data.toString('latin1');
  const prefix = GRUB_PREFIXES.find((p) => latin.startsWith(p));
  if (prefix !== undefined && e.pcr === 8) {
    // GRUB hashes the command line without its prefix and trailing NUL.
    let body = e.data.subarray(prefix.length);
    if (body.at(-1) === 0) body = body.subarray(0, -1);
    return { text: body.toString('utf8'), verified: digestCovers(e, bank, [body]) };
  }
  // systemd-boot (PCR 12, formerly 8): the UTF-16LE command line, hashed as it is.
  const utf16 = e.data.length > 1 && e.data[1] === 0;
  if ((e.pcr === 12 || e.pcr === 8) && utf16)
    return {
      text: e.data
        .subarray(0, e.data.length & ~1)
        .toString('utf16le')
        .replace(/\0+$/u, ''),
      verified: digestCovers(e, bank, [e.data]),
    };
  return undefined;
}

function tokenMatches(token: string, rule: string): boolean {
  return rule.endsWith('=') ? token.startsWith(rule) : token === rule;
}

function cmdlineRules(
  rules: NonNullable<MeasuredBootPolicy['kernelCmdline']>,
  events: readonly TcgEvent[],
  bank: HashName,
  v: (code: string, e: TcgEvent, extra?: string) => void,
): MeasuredBootViolation[] {
  let seen = false;
  for (const e of events) {
    const cmd = kernelCmdline(e, bank);
    if (cmd === undefined) continue;
    if (!cmd.verified) {
      v('event_data_mismatch', e, ' kernel_cmdline');
      continue;
    }
    seen = true;
    const tokens = cmd.text.split(/\s+/u).filter((t) => t.length > 0);
    for (const f of rules.forbid) {
      const hit = tokens.find((t) => tokenMatches(t, f));
      if (hit !== undefined) v('kernel_cmdline_forbidden', e, ` token=${JSON.stringify(hit)}`);
    }
    for (const r of rules.require)
      if (!tokens.some((t) => tokenMatches(t, r)))
        v('kernel_cmdline_missing', e, ` token=${JSON.stringify(r)}`);
  }
  return seen ? [] : [{ code: 'kernel_cmdline_unmeasured', detail: 'pcr=8,12 type=EV_IPL' }];
}
