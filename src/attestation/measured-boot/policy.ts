/**
 * The `measuredBoot` member of a reference policy: which PCRs must be quoted and replayed
 * from the event log, and rules over what the replayed events say booted (rules.ts) and
 * over the IMA list (ima-rules.ts). Validated at load like the rest of the policy: a bad
 * policy stops start-up (config_invalid) or is refused by the operator route.
 *
 *   "measuredBoot": {
 *     "pcrs": { "sha256": [0, 1, 2, 3, 4, 5, 6, 7] },   // quoted and replayed; digests
 *                                                      // below are in the first bank
 *     "secureBoot": true,                              // SecureBoot variable = 1
 *     "pk":  { "allow": ["<hex>"] },                   // EFI signature database entries:
 *     "kek": { "allow": ["<hex>"] },                   //   SHA-256 of an X.509 certificate's
 *     "db":  { "allow": ["<hex>"], "forbid": [...] },  //   DER, or the hash of a hash entry
 *     "dbx": { "require": ["<hex>"] },
 *     "bootApplications": ["<hex>", ...],              // EV_EFI_BOOT_SERVICES_APPLICATION,
 *                                                      // _DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER
 *     "kernelCmdline": { "require": ["lockdown=integrity"], "forbid": ["init=", "selinux=0"] },
 *     "authority": { "allow": ["<hex>"], "forbid": [...] }, // EV_EFI_VARIABLE_AUTHORITY entries
 *     "sbatLevel": { "shim": 2, "grub": 3 },           // shim's SbatLevel at least these
 *     "mok": { "MokList": ["<hex>"], "MokListX": [...] }, // PCR 14: digests of the contents
 *     "ima": { "pcr": 10, "allow": { "/usr/bin/dd": ["<hex>"] }, "allowDigests": ["<hex>"],
 *              "deny": ["<hex>"], "keys": ["<PEM public key>"], "exclude": ["^/tmp/"],
 *              "allowViolations": false }
 *   }
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { HashName } from '../../tpm/marshal/constants.js';
import { ConfigError } from '../../shared/errors.js';
import { jcsSha256Hex } from '../../shared/jcs.js';
import { bankByName } from './hashes.js';

export interface SignatureDbRule {
  /** Every entry of the variable must be one of these. */
  readonly allow: ReadonlySet<string> | undefined;
  /** None of these may be present. */
  readonly forbid: ReadonlySet<string>;
  /** All of these must be present (a dbx that revokes what must be revoked). */
  readonly require: ReadonlySet<string>;
}

export type SignatureDbName = 'pk' | 'kek' | 'db' | 'dbx';

/** shim's MOK variables, measured on PCR 14 (the digest of their contents). */
export type MokVariableName = 'MokList' | 'MokListX' | 'MokListTrusted';

export interface ImaKey {
  readonly key: KeyObject;
  /** The 4-byte key id IMA signatures name (last 4 bytes of SHA-1 of the DER SPKI). */
  readonly keyId: string;
}

export interface ImaRules {
  /** Hex JCS SHA-256 of the rules as written: which rules a stored verdict was found under. */
  readonly id: string;
  readonly pcr: number;
  readonly allow: ReadonlyMap<string, ReadonlySet<string>>;
  readonly allowDigests: ReadonlySet<string>;
  readonly deny: ReadonlySet<string>;
  readonly keys: readonly ImaKey[];
  readonly exclude: readonly RegExp[];
  readonly allowViolations: boolean;
}

export interface MeasuredBootPolicy {
  /** PCRs that must be quoted and equal the replayed log, per bank. */
  readonly pcrs: ReadonlyMap<HashName, readonly number[]>;
  /** The bank digests in rules are compared in (the first of `pcrs`). */
  readonly bank: HashName;
  readonly secureBoot: boolean | undefined;
  readonly signatureDbs: ReadonlyMap<SignatureDbName, SignatureDbRule>;
  readonly bootApplications: ReadonlySet<string> | undefined;
  readonly kernelCmdline:
    { readonly require: readonly string[]; readonly forbid: readonly string[] } | undefined;
  /** EV_EFI_VARIABLE_AUTHORITY: the db/vendor_db/MokList/shim entries that may verify images. */
  readonly authority:
    | { readonly allow: ReadonlySet<string> | undefined; readonly forbid: ReadonlySet<string> }
    | undefined;
  /** shim's SbatLevel: component -> lowest revocation generation it must hold. */
  readonly sbatLevel: ReadonlyMap<string, number> | undefined;
  /** MokList/MokListX/MokListTrusted: the digests (policy bank) their contents may have. */
  readonly mok: ReadonlyMap<MokVariableName, ReadonlySet<string>> | undefined;
  readonly ima: ImaRules | undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const HEX = /^(?:[0-9a-fA-F]{2}){1,64}$/;

/** Validate the `measuredBoot` member; `where` names the policy in errors. */
export function parseMeasuredBootPolicy(raw: unknown, where: string): MeasuredBootPolicy {
  const fail = (msg: string): ConfigError =>
    new ConfigError(`referencePolicies(${where}).measuredBoot`, msg);
  if (!isRecord(raw)) throw fail('must be an object');
  const known = [
    'pcrs',
    'secureBoot',
    'pk',
    'kek',
    'db',
    'dbx',
    'bootApplications',
    'kernelCmdline',
    'authority',
    'sbatLevel',
    'mok',
    'ima',
  ];
  for (const k of Object.keys(raw)) if (!known.includes(k)) throw fail(`unknown member ${k}`);
  const hexSet = (v: unknown, what: string): Set<string> => {
    if (!Array.isArray(v) || v.length > 100_000)
      throw fail(`${what} must be an array of hex digests`);
    const out = new Set<string>();
    for (const h of v) {
      if (typeof h !== 'string' || !HEX.test(h)) throw fail(`${what} has a value that is not hex`);
      out.add(h.toLowerCase());
    }
    return out;
  };
  const strings = (v: unknown, what: string, max = 256): string[] => {
    if (v === undefined) return [];
    if (
      !Array.isArray(v) ||
      !v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= max)
    )
      throw fail(`${what} must be an array of non-empty strings`);
    return v as string[];
  };

  if (!isRecord(raw.pcrs) || Object.keys(raw.pcrs).length === 0)
    throw fail('pcrs must name at least one bank');
  const pcrs = new Map<HashName, number[]>();
  for (const [bank, list] of Object.entries(raw.pcrs)) {
    const b = bankByName(bank);
    if (b === undefined) throw fail(`unknown bank ${bank}`);
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      !list.every((p) => Number.isInteger(p) && p >= 0 && p <= 23)
    )
      throw fail(`pcrs.${bank} must be a non-empty array of PCR indices 0..23`);
    pcrs.set(
      b.name,
      [...new Set(list as number[])].sort((x, y) => x - y),
    );
  }
  const bank = [...pcrs.keys()][0] ?? 'sha256';

  if (raw.secureBoot !== undefined && typeof raw.secureBoot !== 'boolean')
    throw fail('secureBoot is a boolean');
  const signatureDbs = new Map<SignatureDbName, SignatureDbRule>();
  for (const name of ['pk', 'kek', 'db', 'dbx'] as const) {
    const rule = raw[name];
    if (rule === undefined) continue;
    if (
      !isRecord(rule) ||
      Object.keys(rule).some((k) => !['allow', 'forbid', 'require'].includes(k))
    )
      throw fail(`${name} takes allow, forbid and require`);
    signatureDbs.set(name, {
      allow: rule.allow === undefined ? undefined : hexSet(rule.allow, `${name}.allow`),
      forbid: rule.forbid === undefined ? new Set() : hexSet(rule.forbid, `${name}.forbid`),
      require: rule.require === undefined ? new Set() : hexSet(rule.require, `${name}.require`),
    });
  }
  let kernelCmdline: MeasuredBootPolicy['kernelCmdline'];
  if (raw.kernelCmdline !== undefined) {
    const k = raw.kernelCmdline;
    if (!isRecord(k) || Object.keys(k).some((x) => x !== 'require' && x !== 'forbid'))
      throw fail('kernelCmdline takes require and forbid');
    kernelCmdline = {
      require: strings(k.require, 'kernelCmdline.require'),
      forbid: strings(k.forbid, 'kernelCmdline.forbid'),
    };
  }
  let authority: MeasuredBootPolicy['authority'];
  if (raw.authority !== undefined) {
    const a = raw.authority;
    if (!isRecord(a) || Object.keys(a).some((x) => x !== 'allow' && x !== 'forbid'))
      throw fail('authority takes allow and forbid');
    authority = {
      allow: a.allow === undefined ? undefined : hexSet(a.allow, 'authority.allow'),
      forbid: a.forbid === undefined ? new Set() : hexSet(a.forbid, 'authority.forbid'),
    };
  }
  let sbatLevel: Map<string, number> | undefined;
  if (raw.sbatLevel !== undefined) {
    const l = raw.sbatLevel;
    if (!isRecord(l) || Object.keys(l).length === 0 || Object.keys(l).length > 256)
      throw fail('sbatLevel maps components to their lowest generation');
    sbatLevel = new Map();
    for (const [component, generation] of Object.entries(l)) {
      if (!/^[A-Za-z0-9._-]{1,64}$/u.test(component))
        throw fail(`sbatLevel: ${component.slice(0, 64)} is not a component name`);
      if (!Number.isInteger(generation) || (generation as number) < 0)
        throw fail(`sbatLevel.${component} must be a generation (integer)`);
      sbatLevel.set(component, generation as number);
    }
  }
  let mok: Map<MokVariableName, Set<string>> | undefined;
  if (raw.mok !== undefined) {
    const m = raw.mok;
    const names: readonly string[] = ['MokList', 'MokListX', 'MokListTrusted'];
    if (!isRecord(m) || Object.keys(m).some((x) => !names.includes(x)))
      throw fail('mok takes MokList, MokListX and MokListTrusted');
    mok = new Map();
    for (const [name, digests] of Object.entries(m))
      mok.set(name as MokVariableName, hexSet(digests, `mok.${name}`));
  }
  // A rule reads only events on quoted, replayed PCRs: the PCRs its events live on must be
  // in `pcrs` (bank of the rules), or the rule would pass for want of verified events.
  const quoted = pcrs.get(bank) ?? [];
  const needs = (what: string, list: readonly number[]) => {
    if (!list.every((p) => quoted.includes(p)))
      throw fail(`${what} needs PCR ${list.join(' and ')} in pcrs.${bank}`);
  };
  if (raw.secureBoot !== undefined || signatureDbs.size > 0) needs('secureBoot/pk/kek/db/dbx', [7]);
  if (authority !== undefined || sbatLevel !== undefined) needs('authority/sbatLevel', [7]);
  if (mok !== undefined) needs('mok', [14]);
  if (raw.bootApplications !== undefined) needs('bootApplications', [2, 4]);
  if (kernelCmdline !== undefined && !quoted.includes(8) && !quoted.includes(12))
    throw fail(`kernelCmdline needs PCR 8 or 12 in pcrs.${bank}`);
  return {
    pcrs,
    bank,
    secureBoot: raw.secureBoot,
    signatureDbs,
    bootApplications:
      raw.bootApplications === undefined
        ? undefined
        : hexSet(raw.bootApplications, 'bootApplications'),
    kernelCmdline,
    authority,
    sbatLevel,
    mok,
    ima: raw.ima === undefined ? undefined : parseImaRules(raw.ima, fail, hexSet, strings),
  };
}

function parseImaRules(
  raw: unknown,
  fail: (m: string) => ConfigError,
  hexSet: (v: unknown, what: string) => Set<string>,
  strings: (v: unknown, what: string, max?: number) => string[],
): ImaRules {
  if (!isRecord(raw)) throw fail('ima must be an object');
  const known = ['pcr', 'allow', 'allowDigests', 'deny', 'keys', 'exclude', 'allowViolations'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) throw fail(`ima: unknown member ${k}`);
  const pcr = raw.pcr ?? 10;
  if (typeof pcr !== 'number' || !Number.isInteger(pcr) || pcr < 0 || pcr > 23)
    throw fail('ima.pcr is 0..23');
  const allow = new Map<string, Set<string>>();
  if (raw.allow !== undefined) {
    if (!isRecord(raw.allow)) throw fail('ima.allow maps file names to digests');
    for (const [path, digests] of Object.entries(raw.allow))
      allow.set(path, hexSet(digests, `ima.allow[${path.slice(0, 64)}]`));
  }
  const keys: ImaKey[] = [];
  for (const pem of strings(raw.keys, 'ima.keys', 16_384)) {
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      throw fail('ima.keys holds something that is not a PEM public key');
    }
    keys.push({ key, keyId: imaKeyId(key) });
  }
  const exclude = strings(raw.exclude, 'ima.exclude').map((s) => {
    try {
      return new RegExp(s, 'u');
    } catch {
      throw fail('ima.exclude holds an invalid regular expression');
    }
  });
  if (raw.allowViolations !== undefined && typeof raw.allowViolations !== 'boolean')
    throw fail('ima.allowViolations is a boolean');
  return {
    id: jcsSha256Hex(raw),
    pcr,
    allow,
    allowDigests:
      raw.allowDigests === undefined ? new Set() : hexSet(raw.allowDigests, 'ima.allowDigests'),
    deny: raw.deny === undefined ? new Set() : hexSet(raw.deny, 'ima.deny'),
    keys,
    exclude,
    allowViolations: raw.allowViolations ?? false,
  };
}

/**
 * The 4-byte key id an IMA signature names: the last 4 bytes of the key's subject key
 * identifier, which evmctl and the kernel take as SHA-1 of the public key bit string
 * (RFC 5280 §4.2.1.2 method 1).
 */
export function imaKeyId(key: KeyObject): string {
  const spki = key.export({ format: 'der', type: 'spki' });
  return createHash('sha1').update(bitString(spki)).digest().subarray(16).toString('hex');
}

/** The subjectPublicKey BIT STRING contents of a DER SubjectPublicKeyInfo (unused-bits byte dropped). */
function bitString(spki: Buffer): Buffer {
  // SEQUENCE { SEQUENCE algorithm, BIT STRING key }: skip the outer header and the algorithm.
  const len = (at: number): { len: number; next: number } => {
    const first = spki[at] ?? 0;
    if (first < 0x80) return { len: first, next: at + 1 };
    const n = first & 0x7f;
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + (spki[at + 1 + i] ?? 0);
    return { len: v, next: at + 1 + n };
  };
  const outer = len(1).next; // into the outer SEQUENCE
  const alg = len(outer + 1);
  const o = alg.next + alg.len; // past the algorithm SEQUENCE
  const key = len(o + 1);
  return spki.subarray(key.next + 1, key.next + key.len);
}
