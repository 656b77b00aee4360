/**
 * Reference policies: named sets of acceptable PCR values per bank, assigned to runtimes by
 * label selector, loaded from JSON files and validated at load (a bad file stops startup).
 *
 * File form (one policy per file, or an array of them):
 *   { "name": "swtpm-dev",
 *     "selector": { "platform": "swtpm" },          // every label must match
 *     "catchAll": false,                            // true (and no selector): every runtime
 *     "pcrs": { "sha256": { "0": ["<hex>", ...], "7": ["<hex>"] } },
 *     "allowSha1": false,                           // a sha1 bank only when true
 *     "allowReset": false,                          // default false: a TPM reset since the
 *                                                   // last quote makes it untrusted; true
 *                                                   // only reports it
 *     "firmware": {                                 // optional: TPMS_ATTEST.firmwareVersion,
 *       "minimum": "<16 hex>",                      // 16 hex characters (vendor-specific
 *       "refuse": ["<16 hex>", { "from": "<16 hex>", "to": "<16 hex>" }] } }  // uint64)
 */
import { readFile } from 'node:fs/promises';
import { hashInfoByName, type HashName } from '../tpm/marshal/constants.js';
import { ConfigError } from '../shared/errors.js';
import { ReferencePolicyNotFoundError, ReferencePolicyStateError } from './errors.js';
import { parseMeasuredBootPolicy, type MeasuredBootPolicy } from './measured-boot/policy.js';

export interface ReferencePolicy {
  readonly name: string;
  readonly selector: Readonly<Record<string, string>>;
  /** bank -> PCR index -> acceptable values (lower-case hex). Every listed PCR is required. */
  readonly pcrs: ReadonlyMap<HashName, ReadonlyMap<number, ReadonlySet<string>>>;
  readonly allowReset: boolean;
  /** Firmware versions the policy refuses (a quote with one is untrusted). */
  readonly firmware?: FirmwarePolicy;
  /** Event-log replay and rules over what booted (measured-boot/policy.ts). */
  readonly measuredBoot?: MeasuredBootPolicy;
}

/** Bounds on TPMS_ATTEST.firmwareVersion (vendor-specific uint64, compared as a number). */
export interface FirmwarePolicy {
  /** Versions below it are refused. */
  readonly minimum?: bigint;
  /** Inclusive ranges refused (a single version is a range of one). */
  readonly refuse: readonly { readonly from: bigint; readonly to: bigint }[];
}

/** The most refused ranges one policy may list. */
const MAX_FIRMWARE_RANGES = 256;

/** True when the policy refuses this firmware version. */
export function firmwareRefused(policy: ReferencePolicy, version: bigint): boolean {
  const f = policy.firmware;
  if (f === undefined) return false;
  if (f.minimum !== undefined && version < f.minimum) return true;
  return f.refuse.some((r) => r.from <= version && version <= r.to);
}

function parseFirmware(raw: unknown, fail: (msg: string) => ConfigError): FirmwarePolicy {
  if (!isRecord(raw)) throw fail('firmware must be an object');
  for (const k of Object.keys(raw))
    if (k !== 'minimum' && k !== 'refuse' && k !== 'description')
      throw fail(`unknown member firmware.${k}`);
  const version = (v: unknown, what: string): bigint => {
    if (typeof v !== 'string' || !/^[0-9a-fA-F]{16}$/.test(v))
      throw fail(`${what} must be 16 hex characters (the uint64 firmwareVersion)`);
    return BigInt(`0x${v}`);
  };
  const { minimum, refuse = [] } = raw;
  if (!Array.isArray(refuse) || refuse.length > MAX_FIRMWARE_RANGES)
    throw fail(`firmware.refuse must be an array of at most ${MAX_FIRMWARE_RANGES} entries`);
  const ranges = refuse.map((r: unknown, i) => {
    if (typeof r === 'string') {
      const v = version(r, `firmware.refuse[${i}]`);
      return { from: v, to: v };
    }
    if (!isRecord(r)) throw fail(`firmware.refuse[${i}] must be a version or {from, to}`);
    for (const k of Object.keys(r))
      if (k !== 'from' && k !== 'to' && k !== 'description')
        throw fail(`unknown member firmware.refuse[${i}].${k}`);
    const from = version(r.from, `firmware.refuse[${i}].from`);
    const to = version(r.to, `firmware.refuse[${i}].to`);
    if (from > to) throw fail(`firmware.refuse[${i}]: from is above to`);
    return { from, to };
  });
  if (minimum === undefined && ranges.length === 0)
    throw fail('firmware needs a minimum or refused versions');
  return {
    ...(minimum === undefined ? {} : { minimum: version(minimum, 'firmware.minimum') }),
    refuse: ranges,
  };
}

const BANKS: readonly HashName[] = ['sha1', 'sha256', 'sha384', 'sha512'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validate one parsed policy object; `where` names it in errors. */
export function parseReferencePolicy(raw: unknown, where: string): ReferencePolicy {
  const fail = (msg: string): ConfigError => new ConfigError(`referencePolicies(${where})`, msg);
  if (!isRecord(raw)) throw fail('a policy must be an object');
  const known = new Set([
    'name',
    'selector',
    'pcrs',
    'allowSha1',
    'allowReset',
    'description',
    'firmware',
    'catchAll',
    'measuredBoot',
  ]);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw fail(`unknown member ${k}`);
  const { name, selector = {}, allowSha1 = false, allowReset = false, catchAll = false } = raw;
  const measuredBoot =
    raw.measuredBoot === undefined ? undefined : parseMeasuredBootPolicy(raw.measuredBoot, where);
  // With measured boot, PCRs are checked by replaying the event log: raw values are optional.
  const pcrs = raw.pcrs === undefined && measuredBoot !== undefined ? {} : raw.pcrs;
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw fail('name must be 1-64 characters of A-Z a-z 0-9 . _ -');
  if (!isRecord(selector) || !Object.values(selector).every((v) => typeof v === 'string'))
    throw fail('selector must map label names to strings');
  if (typeof catchAll !== 'boolean') throw fail('catchAll is a boolean');
  // A policy that matches every runtime is said so, never the accident of a missing selector.
  if (Object.keys(selector).length === 0 && !catchAll)
    throw fail('an empty selector matches every runtime: declare it with "catchAll": true');
  if (Object.keys(selector).length > 0 && catchAll)
    throw fail('a catch-all policy has no selector');
  if (typeof allowSha1 !== 'boolean' || typeof allowReset !== 'boolean')
    throw fail('allowSha1 and allowReset are booleans');
  if (!isRecord(pcrs) || (Object.keys(pcrs).length === 0 && measuredBoot === undefined))
    throw fail('pcrs must name at least one bank');
  const banks = new Map<HashName, Map<number, Set<string>>>();
  for (const [bank, indices] of Object.entries(pcrs)) {
    const info = hashInfoByName(bank);
    if (info === undefined || !BANKS.includes(info.name)) throw fail(`unknown bank ${bank}`);
    // No silent SHA-1: a policy must say it accepts the SHA-1 bank.
    if (info.name === 'sha1' && !allowSha1) throw fail('the sha1 bank needs allowSha1: true');
    if (!isRecord(indices) || Object.keys(indices).length === 0)
      throw fail(`bank ${bank} must name at least one PCR`);
    const byIndex = new Map<number, Set<string>>();
    for (const [index, values] of Object.entries(indices)) {
      if (!/^(0|[1-9][0-9]?)$/.test(index) || Number(index) > 23)
        throw fail(`${bank}: PCR index ${index} is not 0..23`);
      if (!Array.isArray(values) || values.length === 0)
        throw fail(`${bank}:${index} needs a non-empty array of values`);
      const set = new Set<string>();
      for (const v of values) {
        if (typeof v !== 'string' || !new RegExp(`^[0-9a-fA-F]{${info.size * 2}}$`).test(v))
          throw fail(`${bank}:${index} has a value that is not ${info.size} bytes of hex`);
        set.add(v.toLowerCase());
      }
      byIndex.set(Number(index), set);
    }
    banks.set(info.name, byIndex);
  }
  // The measured-boot banks are quoted banks this policy allows (no raw values of their own).
  for (const bank of measuredBoot?.pcrs.keys() ?? []) {
    if (bank === 'sha1' && !allowSha1) throw fail('the sha1 bank needs allowSha1: true');
    if (!banks.has(bank)) banks.set(bank, new Map());
  }
  return {
    name,
    selector: { ...(selector as Record<string, string>) },
    pcrs: banks,
    allowReset,
    ...(raw.firmware === undefined ? {} : { firmware: parseFirmware(raw.firmware, fail) }),
    ...(measuredBoot === undefined ? {} : { measuredBoot }),
  };
}

/** Load and validate policy files; names must be unique across files. */
export async function loadReferencePolicies(paths: readonly string[]): Promise<ReferencePolicy[]> {
  const out: ReferencePolicy[] = [];
  for (const path of paths) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch (e) {
      throw new ConfigError(`referencePolicies(${path})`, `unreadable: ${(e as Error).message}`);
    }
    const list = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
    list.forEach((p, i) => out.push(parseReferencePolicy(p, `${path}#${i}`)));
  }
  return checkUnique(out);
}

export function checkUnique(policies: readonly ReferencePolicy[]): ReferencePolicy[] {
  const names = new Set<string>();
  for (const p of policies) {
    if (names.has(p.name)) throw new ConfigError('referencePolicies', `duplicate name ${p.name}`);
    names.add(p.name);
  }
  return [...policies];
}

/**
 * The policy for a runtime's labels: every selector entry must match; the most specific
 * selector wins, the first loaded among equals. Undefined when none applies.
 */
export function policyForLabels(
  policies: readonly ReferencePolicy[],
  labels: Readonly<Record<string, string>>,
): ReferencePolicy | undefined {
  let best: ReferencePolicy | undefined;
  for (const p of policies) {
    const entries = Object.entries(p.selector);
    if (!entries.every(([k, v]) => labels[k] === v)) continue;
    if (best === undefined || entries.length > Object.keys(best.selector).length) best = p;
  }
  return best;
}

/** Who disabled a policy and when (persisted). */
export interface DisabledMark {
  readonly at: string;
  readonly by: string;
}

/**
 * The loaded policies and which of them operators have disabled. Quote verification sees
 * only `enabled` (one array, replaced whole on every change, so a reader never sees half a
 * change): a disabled policy matches no runtime, and a runtime that only it matched has
 * no reference policy any more (reference_policy_unknown).
 */
export class ReferencePolicyRegistry {
  readonly #all: readonly ReferencePolicy[];
  #disabled: ReadonlyMap<string, DisabledMark>;
  #enabled: readonly ReferencePolicy[];

  constructor(policies: readonly ReferencePolicy[], disabled: ReadonlyMap<string, DisabledMark>) {
    this.#all = checkUnique(policies);
    // A mark for a policy no longer shipped is dropped, not kept for a future namesake.
    this.#disabled = new Map(
      [...disabled].filter(([name]) => this.#all.some((p) => p.name === name)),
    );
    this.#enabled = this.#compute();
  }

  #compute(): readonly ReferencePolicy[] {
    return Object.freeze(this.#all.filter((p) => !this.#disabled.has(p.name)));
  }

  get enabled(): readonly ReferencePolicy[] {
    return this.#enabled;
  }

  get disabled(): ReadonlyMap<string, DisabledMark> {
    return this.#disabled;
  }

  list(): { policy: ReferencePolicy; disabled: DisabledMark | undefined }[] {
    return this.#all.map((policy) => ({ policy, disabled: this.#disabled.get(policy.name) }));
  }

  /** Throws unless `name` exists and is currently `enabled === expectEnabled`. */
  check(name: string, expectEnabled: boolean): void {
    if (!this.#all.some((p) => p.name === name)) throw new ReferencePolicyNotFoundError(name);
    const enabled = !this.#disabled.has(name);
    if (enabled !== expectEnabled) throw new ReferencePolicyStateError(name, enabled);
  }

  /** The disabled set after disabling (`mark`) or enabling (undefined) `name`; not applied. */
  next(name: string, mark: DisabledMark | undefined): ReadonlyMap<string, DisabledMark> {
    const next = new Map(this.#disabled);
    if (mark === undefined) next.delete(name);
    else next.set(name, mark);
    return next;
  }

  /** Apply a disabled set computed by `next` (after it was persisted and audited). */
  apply(disabled: ReadonlyMap<string, DisabledMark>): void {
    this.#disabled = disabled;
    this.#enabled = this.#compute();
  }
}
