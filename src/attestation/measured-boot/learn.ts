/**
 * Golden values: a reference policy learned from a known-good machine's event log (and IMA
 * list). Everything learned is what that machine measured: the PCRs its log extends, Secure
 * Boot as it was, its PK/KEK/db entries as the only allowed ones and its dbx entries as
 * required, its boot applications and drivers, its kernel command line tokens (without
 * the kernel and initrd paths, which change with every update), and every file IMA
 * measured with its digest. The result passes the same validation as a loaded policy.
 */
import { parseReferencePolicy, type ReferencePolicy } from '../reference-policy.js';
import { EV } from './event-types.js';
import { bankByName } from './hashes.js';
import type { ImaEntry } from './ima.js';
import { replayEventLog } from './replay.js';
import type { TcgEventLog } from './tcg-log.js';
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  parseSignatureLists,
  parseUefiVariable,
} from './uefi.js';
import { createHash } from 'node:crypto';
import { authorityId, parseSbatLevel, SHIM_LOCK_GUID } from './shim-rules.js';

export interface LearnOptions {
  readonly name: string;
  readonly selector?: Readonly<Record<string, string>>;
  /** The bank to state digests in (default sha256). */
  readonly bank?: string;
}

const APPLICATIONS = new Set<number>([
  EV.EFI_BOOT_SERVICES_APPLICATION,
  EV.EFI_BOOT_SERVICES_DRIVER,
  EV.EFI_RUNTIME_SERVICES_DRIVER,
]);
const VOLATILE_TOKENS = /^(BOOT_IMAGE|initrd)=|^\/|^\(/u;

export interface LearnedPolicy {
  /** The JSON to write (validated). */
  readonly json: Record<string, unknown>;
  readonly policy: ReferencePolicy;
}

export function learnReferencePolicy(
  log: TcgEventLog,
  ima: readonly ImaEntry[] | undefined,
  options: LearnOptions,
): LearnedPolicy {
  const bank = bankByName(options.bank ?? 'sha256');
  if (bank === undefined) throw new TypeError(`unknown bank ${options.bank ?? ''}`);
  const replay = replayEventLog(log);
  if (!replay.pcrs.has(bank.name)) throw new TypeError(`the log has no ${bank.name} digests`);
  const hex = (b: Buffer) => b.toString('hex');
  const covers = (digest: Buffer | undefined, data: Buffer) =>
    digest !== undefined && createHash(bank.node).update(data).digest().equals(digest);

  const measured: Record<string, unknown> = {
    pcrs: {
      [bank.name]: [...replay.extended].filter((p) => p <= 23 && p !== 10).sort((a, b) => a - b),
    },
  };
  const apps = new Set<string>();
  let cmdline: string[] | undefined;
  const authorities = new Set<string>();
  let unreadableAuthority = false;
  let sbat: Record<string, number> | undefined;
  const mok: Record<string, string[]> = {};
  for (const e of log.events) {
    const digest = e.digests.get(bank.id);
    if (APPLICATIONS.has(e.type) && digest !== undefined) apps.add(hex(digest));
    if (e.pcr === 7 && e.type === EV.EFI_VARIABLE_DRIVER_CONFIG) {
      let v;
      try {
        v = parseUefiVariable(e.data);
      } catch {
        continue;
      }
      if (!covers(digest, e.data) && !covers(digest, v.data)) continue;
      if (v.guid === EFI_GLOBAL_VARIABLE && v.name === 'SecureBoot')
        measured.secureBoot = v.data.length === 1 && v.data[0] === 1;
      const db = { PK: 'pk', KEK: 'kek', db: 'db', dbx: 'dbx' }[v.name];
      const guid =
        v.name === 'db' || v.name === 'dbx' ? EFI_IMAGE_SECURITY_DATABASE : EFI_GLOBAL_VARIABLE;
      if (db === undefined || v.guid !== guid) continue;
      let ids: string[];
      try {
        ids = [...new Set(parseSignatureLists(v.data).map((s) => s.id))];
      } catch {
        continue;
      }
      measured[db] = db === 'dbx' ? { require: ids } : { allow: ids };
    }
    if (e.pcr === 7 && e.type === EV.EFI_VARIABLE_AUTHORITY) {
      let v;
      try {
        v = parseUefiVariable(e.data);
      } catch {
        // The rule would refuse the machine it is learned from (shim-rules.ts fails closed).
        unreadableAuthority = true;
        continue;
      }
      if (!covers(digest, e.data) && !covers(digest, v.data)) continue;
      if (v.guid === SHIM_LOCK_GUID && v.name === 'SbatLevel') {
        // The level it booted with is the least the fleet may fall back to.
        const level = parseSbatLevel(v.data.toString('latin1'));
        if (level !== undefined) sbat = Object.fromEntries(level);
        continue;
      }
      const id = authorityId(v.data);
      if (id !== undefined && v.name !== 'MokListTrusted') authorities.add(id);
    }
    if (e.pcr === 14 && e.type === EV.IPL && digest !== undefined) {
      const name = e.data.toString('latin1').replace(/\0$/u, '');
      if (name === 'MokList' || name === 'MokListX' || name === 'MokListTrusted')
        mok[name] = [hex(digest)];
    }
    if (e.type === EV.IPL && e.pcr === 8) {
      const text = e.data.toString('latin1');
      const prefix = ['kernel_cmdline: ', 'kernel_cmdline '].find((p) => text.startsWith(p));
      if (prefix === undefined) continue;
      let body = e.data.subarray(prefix.length);
      if (body.at(-1) === 0) body = body.subarray(0, -1);
      if (!covers(digest, body)) continue;
      cmdline = body
        .toString('utf8')
        .split(/\s+/u)
        .filter((t) => t.length > 0 && !VOLATILE_TOKENS.test(t));
    }
  }
  if (apps.size > 0) measured.bootApplications = [...apps];
  if (cmdline !== undefined) measured.kernelCmdline = { require: [...new Set(cmdline)] };
  if (authorities.size > 0 && !unreadableAuthority)
    measured.authority = { allow: [...authorities] };
  if (sbat !== undefined) measured.sbatLevel = sbat;
  if (Object.keys(mok).length > 0) measured.mok = mok;
  if (ima !== undefined) {
    const allow: Record<string, string[]> = {};
    for (const e of ima) {
      if (e.violation) continue;
      const list = (allow[e.name] ??= []);
      const d = hex(e.digest);
      if (!list.includes(d)) list.push(d);
    }
    measured.ima = { pcr: ima[0]?.pcr ?? 10, allow };
  }
  // The PCRs the learned rules read must be quoted (policy.ts), extended or not.
  const pcrList = new Set((measured.pcrs as Record<string, number[]>)[bank.name]);
  if (apps.size > 0) [2, 4].forEach((p) => pcrList.add(p));
  if (['secureBoot', 'pk', 'kek', 'db', 'dbx', 'authority', 'sbatLevel'].some((k) => k in measured))
    pcrList.add(7);
  if ('mok' in measured) pcrList.add(14);
  if (cmdline !== undefined) pcrList.add(8);
  measured.pcrs = { [bank.name]: [...pcrList].sort((a, b) => a - b) };
  const json: Record<string, unknown> = {
    name: options.name,
    selector: { ...(options.selector ?? {}) },
    // Without a selector the policy is for every runtime: it must say so (reference-policy.ts).
    ...(Object.keys(options.selector ?? {}).length === 0 ? { catchAll: true } : {}),
    description: `learned from an event log (${log.events.length} events)${ima === undefined ? '' : ` and ${ima.length} IMA entries`}`,
    ...(bank.name === 'sha1' ? { allowSha1: true } : {}),
    allowReset: true,
    measuredBoot: measured,
  };
  return { json, policy: parseReferencePolicy(json, 'learned') };
}
