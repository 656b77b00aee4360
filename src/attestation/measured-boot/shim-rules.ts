/**
 * Rules over what authorised each boot component and over shim's own state: the
 * EV_EFI_VARIABLE_AUTHORITY events on PCR 7 (the db, vendor_db, MokList or shim-built-in
 * entry that verified an image), shim's SbatLevel (measured on PCR 7 as an authority event)
 * and its MokList, MokListX and MokListTrusted variables (EV_IPL on PCR 14, the digest of
 * each variable's contents, the data only its name). Like rules.ts, data is read only where
 * the event's digest is the hash of it.
 */
import { createHash } from 'node:crypto';
import type { HashName } from '../../tpm/marshal/constants.js';
import { EV } from './event-types.js';
import { bankByName } from './hashes.js';
import type { MeasuredBootPolicy, MokVariableName } from './policy.js';
import { measuredVariables, violationList, type MeasuredBootViolation } from './rules.js';
import type { TcgEvent } from './tcg-log.js';
import { EFI_IMAGE_SECURITY_DATABASE } from './uefi.js';

/** shim's vendor GUID (SHIM_LOCK_GUID): SbatLevel, MokListTrusted, its built-in cert. */
export const SHIM_LOCK_GUID = '605dab50-e046-4300-abb6-3dd810dd8b23';

/** Authority events naming a signature database entry (not SbatLevel/MokListTrusted). */
const DATABASES: ReadonlySet<string> = new Set([
  `${EFI_IMAGE_SECURITY_DATABASE}/db`,
  `${EFI_IMAGE_SECURITY_DATABASE}/vendor_db`,
  `${SHIM_LOCK_GUID}/Shim`,
  `${SHIM_LOCK_GUID}/MokList`,
]);

function digestOf(e: TcgEvent, bank: HashName): Buffer | undefined {
  const b = bankByName(bank);
  return b === undefined ? undefined : e.digests.get(b.id);
}

/**
 * The id of the entry an authority event names, as db entries are named (uefi.ts): the
 * SHA-256 of a certificate's DER, the hash itself for an EFI_CERT_SHA256 entry. The data
 * is an EFI_SIGNATURE_DATA (owner GUID, then the entry) or, from shim for its built-in
 * certificate, the bare DER.
 */
export function authorityId(data: Buffer): string | undefined {
  const isDer = (b: Buffer) => b.length > 4 && b[0] === 0x30 && b[1] === 0x82;
  if (isDer(data) && data.readUInt16BE(2) + 4 === data.length)
    return createHash('sha256').update(data).digest('hex');
  if (data.length === 16 + 32) return data.subarray(16).toString('hex');
  if (data.length > 16 && isDer(data.subarray(16)))
    return createHash('sha256').update(data.subarray(16)).digest('hex');
  return undefined;
}

/** `sbat,1,2023012900\nshim,2\ngrub,3\n`: component -> generation (and the `sbat` date). */
export function parseSbatLevel(text: string): Map<string, number> | undefined {
  const out = new Map<string, number>();
  for (const line of text.replace(/\0+$/u, '').split('\n')) {
    if (line.trim() === '') continue;
    const [name, generation] = line.split(',');
    if (name === undefined || generation === undefined || !/^\d{1,9}$/u.test(generation))
      return undefined;
    out.set(name, Number(generation));
  }
  return out.get('sbat') === undefined ? undefined : out;
}

const MOK_NAMES: readonly MokVariableName[] = ['MokList', 'MokListX', 'MokListTrusted'];

export function evaluateShimRules(
  policy: MeasuredBootPolicy,
  events: readonly TcgEvent[],
  bank: HashName,
): MeasuredBootViolation[] {
  const { out, v } = violationList(bank);
  const { authority, sbatLevel, mok } = policy;
  if (authority === undefined && sbatLevel === undefined && mok === undefined) return out;

  // PCR 7 authority events, each read only where its digest covers what is read.
  const authorities = measuredVariables(events, EV.EFI_VARIABLE_AUTHORITY, bank, v);

  if (authority !== undefined) {
    for (const { event, variable } of authorities) {
      if (!DATABASES.has(`${variable.guid}/${variable.name}`)) continue;
      const id = authorityId(variable.data);
      const named = ` authority=${variable.name}:${id ?? 'unreadable'}`;
      if (id === undefined) v('event_data_malformed', event, named);
      else if (authority.forbid.has(id)) v('boot_authority_forbidden', event, named);
      else if (authority.allow !== undefined && !authority.allow.has(id))
        v('boot_authority_not_allowed', event, named);
    }
  }

  if (sbatLevel !== undefined) {
    const found = authorities.find(
      (a) => a.variable.guid === SHIM_LOCK_GUID && a.variable.name === 'SbatLevel',
    );
    const level = found && parseSbatLevel(found.variable.data.toString('latin1'));
    if (found === undefined)
      out.push({ code: 'sbat_level_unmeasured', detail: 'pcr=7 variable="SbatLevel"' });
    else if (level === undefined) v('event_data_malformed', found.event, ' variable="SbatLevel"');
    else
      for (const [component, minimum] of sbatLevel) {
        // A component SbatLevel does not name has no revocation: generation 1 is accepted.
        const got = level.get(component) ?? (component === 'sbat' ? 0 : 1);
        if (got < minimum)
          v(
            'sbat_level_too_low',
            found.event,
            ` component=${component} got=${got} need=${minimum}`,
          );
      }
  }

  if (mok !== undefined) {
    for (const name of MOK_NAMES) {
      const allowed = mok.get(name);
      if (allowed === undefined) continue;
      const measured = events.filter(
        (e) => e.pcr === 14 && e.type === EV.IPL && e.data.toString('latin1') === `${name}\0`,
      );
      if (measured.length === 0)
        out.push({ code: 'mok_variable_unmeasured', detail: `pcr=14 variable="${name}"` });
      for (const e of measured) {
        const digest = digestOf(e, bank)?.toString('hex');
        if (digest === undefined || !allowed.has(digest))
          v('mok_variable_not_allowed', e, ` variable="${name}"`);
      }
    }
  }
  return out;
}
