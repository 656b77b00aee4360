/**
 * Enrollment rules (issue 12): operators, not runtimes, decide what a runtime is. A rule
 * matches facts the appliance verified itself at enrollment (the EK certificate's chain,
 * the TPM identity in its SAN, the EK public key) and assigns the labels that reference
 * policy selection and the Cedar policies see, and whether activation makes the runtime
 * `active` or leaves it `pending_approval`. The labels a runtime sends at enrollment are a
 * request, shown to operators and never used by a decision.
 *
 * File and wire form (validated whole: one bad rule refuses the set, as Cedar sets are):
 *   { "version": 1,
 *     "rules": [
 *       { "name": "payments-fleet",
 *         "match": { "ekCa": ["<hex SHA-256 of a CA certificate in the EK's chain>"],
 *                    "tpmManufacturer": ["id:53544D20"], "tpmModel": ["ST33HTPHAHD4"],
 *                    "ekPublicKeySha256": ["<hex SHA-256 of the EK's SubjectPublicKeyInfo>"] },
 *         "labels": { "team": "payments" },
 *         "state": "active" },
 *       { "name": "quarantine", "match": {}, "catchAll": true, "labels": {},
 *         "state": "pending_approval" } ] }
 *
 * Semantics: rules are tried in order and the first that matches wins. Within a rule every
 * criterion given must match (AND); a criterion lists the values it accepts (OR). The
 * criteria read from the EK certificate (ekCa, tpmManufacturer, tpmModel) never match an
 * enrollment without a certificate, and neither does a catch-all: a bare EK public key is
 * matched only by an operator listing its fingerprint. A rule with no criterion must say
 * `"catchAll": true`, so a rule cannot widen to everything by an omission. No rule
 * matching means no labels and `pending_approval`.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../shared/errors.js';
import { jcsSha256Hex } from '../shared/jcs.js';

export type AssignedState = 'active' | 'pending_approval';

export interface RuleMatch {
  readonly ekCa?: readonly string[];
  readonly tpmManufacturer?: readonly string[];
  readonly tpmModel?: readonly string[];
  readonly ekPublicKeySha256?: readonly string[];
}

export interface EnrollmentRule {
  readonly name: string;
  readonly description?: string;
  readonly match: RuleMatch;
  readonly catchAll: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly state: AssignedState;
}

export interface EnrollmentRuleSet {
  readonly version: 1;
  readonly rules: readonly EnrollmentRule[];
}

/** What the appliance verified about an enrolling runtime's TPM: what rules may match. */
export interface EnrollmentFacts {
  /** Hex SHA-256 of the EK's SubjectPublicKeyInfo (DER), as openssl computes it. */
  readonly ekPublicKeySha256: string;
  /** Present only when the EK certificate chained to a trusted CA. */
  readonly certificate?: {
    /** Hex SHA-256 of each CA certificate of the verified chain, leaf's issuer first. */
    readonly chainSha256: readonly string[];
    readonly tpmManufacturer: string;
    readonly tpmModel: string;
  };
}

export const RULE_LIMITS = {
  rules: 256,
  valuesPerCriterion: 1024,
  labels: 32,
  labelKeyLength: 63,
  labelValueLength: 256,
  descriptionLength: 512,
} as const;

export const LABEL_KEY = /^[A-Za-z0-9._/-]{1,63}$/;
const RULE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const MANUFACTURER = /^id:[0-9A-F]{8}$/;
const CRITERIA = ['ekCa', 'tpmManufacturer', 'tpmModel', 'ekPublicKeySha256'] as const;

/** `id:` then the 4-byte vendor id in upper-case hex (the SAN form, case folded). */
export function normaliseManufacturer(v: string): string {
  return v.slice(0, 3).toLowerCase() === 'id:' ? `id:${v.slice(3).toUpperCase()}` : v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Labels as operators may assign them (the same limits as the enrollment route's). */
export function parseLabels(raw: unknown, fail: (msg: string) => Error): Record<string, string> {
  if (!isRecord(raw)) throw fail('labels must map label names to strings');
  const entries = Object.entries(raw);
  if (entries.length > RULE_LIMITS.labels) throw fail(`at most ${RULE_LIMITS.labels} labels`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k))
      throw fail(`label name ${JSON.stringify(k)} is not 1-63 of A-Za-z0-9._/-`);
    if (typeof v !== 'string' || v.length > RULE_LIMITS.labelValueLength)
      throw fail(`label ${k} must be a string of at most ${RULE_LIMITS.labelValueLength}`);
    out[k] = v;
  }
  return out;
}

function parseCriterion(
  name: (typeof CRITERIA)[number],
  raw: unknown,
  fail: (msg: string) => Error,
): string[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > RULE_LIMITS.valuesPerCriterion)
    throw fail(`match.${name} must list 1-${RULE_LIMITS.valuesPerCriterion} values`);
  return raw.map((v) => {
    if (typeof v !== 'string') throw fail(`match.${name} values are strings`);
    switch (name) {
      case 'ekCa':
      case 'ekPublicKeySha256': {
        // Operators paste fingerprints from openssl (colons, upper case): accept, normalise.
        const hex = v.replaceAll(':', '').toLowerCase();
        if (!HEX64.test(hex)) throw fail(`match.${name}: ${JSON.stringify(v)} is not a SHA-256`);
        return hex;
      }
      case 'tpmManufacturer': {
        const id = normaliseManufacturer(v);
        if (!MANUFACTURER.test(id))
          throw fail(`match.tpmManufacturer: ${JSON.stringify(v)} is not id:XXXXXXXX`);
        return id;
      }
      case 'tpmModel':
        if (v.length === 0 || v.length > 128) throw fail('match.tpmModel values are 1-128 long');
        return v;
    }
  });
}

function parseRule(raw: unknown, index: number, fail: (msg: string) => Error): EnrollmentRule {
  const at = (msg: string) => fail(`rules[${index}]: ${msg}`);
  if (!isRecord(raw)) throw at('a rule must be an object');
  const known = new Set(['name', 'description', 'match', 'catchAll', 'labels', 'state']);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw at(`unknown member ${k}`);
  const { name, description, match, catchAll = false, labels = {}, state } = raw;
  if (typeof name !== 'string' || !RULE_NAME.test(name))
    throw at('name must be 1-64 characters of A-Z a-z 0-9 . _ -');
  if (
    description !== undefined &&
    (typeof description !== 'string' || description.length > RULE_LIMITS.descriptionLength)
  )
    throw at(`description must be a string of at most ${RULE_LIMITS.descriptionLength}`);
  if (!isRecord(match)) throw at('match must be an object');
  for (const k of Object.keys(match))
    if (!(CRITERIA as readonly string[]).includes(k)) throw at(`unknown criterion match.${k}`);
  if (typeof catchAll !== 'boolean') throw at('catchAll is a boolean');
  const parsed: Record<string, string[]> = {};
  for (const c of CRITERIA) {
    if (match[c] !== undefined) parsed[c] = parseCriterion(c, match[c], at);
  }
  const empty = Object.keys(parsed).length === 0;
  if (empty && !catchAll) throw at('a rule with no criterion must declare "catchAll": true');
  if (!empty && catchAll) throw at('"catchAll": true goes with an empty match only');
  if (state !== 'active' && state !== 'pending_approval')
    throw at('state must be "active" or "pending_approval"');
  return {
    name,
    ...(description === undefined ? {} : { description }),
    match: parsed,
    catchAll,
    labels: parseLabels(labels, at),
    state,
  };
}

/** Validate a whole rule set; `where` names it in errors (a file path or `request`). */
export function parseEnrollmentRules(raw: unknown, where: string): EnrollmentRuleSet {
  const fail = (msg: string): Error => new ConfigError(`enrollmentRules(${where})`, msg);
  if (!isRecord(raw)) throw fail('the rule set must be an object {version, rules}');
  for (const k of Object.keys(raw))
    if (k !== 'version' && k !== 'rules') throw fail(`unknown member ${k}`);
  if (raw.version !== 1) throw fail('version must be 1');
  if (!Array.isArray(raw.rules)) throw fail('rules must be an array');
  if (raw.rules.length > RULE_LIMITS.rules) throw fail(`at most ${RULE_LIMITS.rules} rules`);
  const rules = raw.rules.map((r, i) => parseRule(r, i, fail));
  const names = new Set<string>();
  for (const r of rules) {
    if (names.has(r.name)) throw fail(`duplicate rule name ${r.name}`);
    names.add(r.name);
  }
  return { version: 1, rules };
}

/** The rule set as JSON (what is persisted, shown and hashed). */
export function ruleSetJson(set: EnrollmentRuleSet): unknown {
  return {
    version: set.version,
    rules: set.rules.map((r) => ({
      name: r.name,
      ...(r.description === undefined ? {} : { description: r.description }),
      match: { ...r.match },
      ...(r.catchAll ? { catchAll: true } : {}),
      labels: { ...r.labels },
      state: r.state,
    })),
  };
}

/** Hex SHA-256 of the set's canonical JSON: what `enrollrules.replace` approvals bind. */
export function ruleSetSha256(set: EnrollmentRuleSet): string {
  return jcsSha256Hex(ruleSetJson(set));
}

function matches(rule: EnrollmentRule, facts: EnrollmentFacts): boolean {
  const cert = facts.certificate;
  if (rule.catchAll) return cert !== undefined;
  const m = rule.match;
  if (m.ekPublicKeySha256 !== undefined && !m.ekPublicKeySha256.includes(facts.ekPublicKeySha256))
    return false;
  const fromCertificate = m.ekCa ?? m.tpmManufacturer ?? m.tpmModel;
  if (fromCertificate === undefined) return true;
  if (cert === undefined) return false;
  if (m.ekCa !== undefined && !cert.chainSha256.some((sha) => m.ekCa?.includes(sha))) return false;
  if (m.tpmManufacturer !== undefined && !m.tpmManufacturer.includes(cert.tpmManufacturer))
    return false;
  if (m.tpmModel !== undefined && !m.tpmModel.includes(cert.tpmModel)) return false;
  return true;
}

/** The first rule that matches, or undefined (no labels, pending approval). */
export function matchRule(
  set: EnrollmentRuleSet,
  facts: EnrollmentFacts,
): EnrollmentRule | undefined {
  return set.rules.find((r) => matches(r, facts));
}

export const EMPTY_RULE_SET: EnrollmentRuleSet = Object.freeze({ version: 1, rules: [] });

/** Load and validate the configured rule file (GRANTOR_ENROLLMENT_RULES); none: no rule. */
export async function loadEnrollmentRules(path: string | undefined): Promise<EnrollmentRuleSet> {
  if (path === undefined) return EMPTY_RULE_SET;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`enrollmentRules(${path})`, `unreadable: ${(e as Error).message}`);
  }
  return parseEnrollmentRules(parsed, path);
}
