/**
 * What the registrar trusts, and its dual-controlled changes (issue 7): the EK CA bundle
 * that enrollment chains EK certificates to, and which reference policies quote
 * verification may match. The attestation service reads both through `trustedEkCas` and
 * `referencePolicies` on every request, so a change takes effect at once, for the next
 * request, by replacing one reference (never half a bundle or half a policy set).
 *
 * Changes are persisted under the state folder (one JSON file each, written to a temporary
 * file and renamed into place) and survive a restart: a replaced EK CA bundle then takes
 * precedence over the configured one (GRANTOR_EK_CA_BUNDLE), and disabled policies stay
 * disabled. Order of every change: validate, write the temporary file, audit, rename,
 * swap; if the audit log cannot record, nothing changes (503 audit_unavailable).
 *
 * The approvals themselves are the HTTP route's business (src/http/routes/attestation.ts
 * consumes them right before calling here); this module only acts.
 */
import { createHash, randomBytes, type X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import {
  describeCertificate,
  parseCaBundle,
  validateEkCaBundle,
  type EkCaCertificateView,
} from './ek-certificate.js';
import {
  EMPTY_RULE_SET,
  parseEnrollmentRules,
  ruleSetJson,
  ruleSetSha256,
  type EnrollmentRuleSet,
} from './enrollment-rules.js';
import { EnrollmentRulesInvalidError } from './errors.js';
import {
  ReferencePolicyRegistry,
  parseReferencePolicy as parsePolicyJson,
  type DisabledMark,
  type ReferencePolicy,
} from './reference-policy.js';
import { AuditUnavailableError, factHex, factId, factText } from '../audit/index.js';
import type { AuditSink } from './service.js';
import {
  PUT_POLICIES_FILE,
  loadPutPolicies,
  mergePutPolicies,
  nextHistory,
  policySha256,
  type PolicyHistory,
} from './reference-policy-versions.js';

/** The operator acting (from the HTTP layer's authenticated actor). */
export interface TrustActor {
  readonly id: string;
  readonly role: string;
  readonly name: string;
}

export interface EkCaView {
  /** Hex SHA-256 of the bundle text as given (what `ekca.replace` approvals bind). */
  readonly sha256: string;
  readonly source: 'configuration' | 'replaced';
  readonly replacedAt?: string;
  /** The operator id who replaced it. */
  readonly replacedBy?: string;
  readonly certificates: EkCaCertificateView[];
}

export interface ReferencePolicyView {
  readonly name: string;
  readonly selector: Readonly<Record<string, string>>;
  readonly enabled: boolean;
  readonly disabledAt?: string;
  readonly disabledBy?: string;
}

export interface EnrollmentRulesView {
  /** Hex SHA-256 of the set's canonical JSON (what `enrollrules.replace` approvals bind). */
  readonly sha256: string;
  readonly source: 'configuration' | 'replaced';
  readonly replacedAt?: string;
  readonly replacedBy?: string;
  readonly ruleSet: unknown;
}

/**
 * A change that withdraws trust some runtimes rested on (issue 18), told to the listener
 * (`onTrustWithdrawn`) after it applied: a reference policy disabled or replaced (with the
 * enabled policies as they were before, which runtimes' quotes were verified against), or
 * the EK CA bundle replaced (with the CAs now trusted).
 */
export type TrustWithdrawal =
  | {
      readonly kind: 'refpolicy.disable' | 'refpolicy.put';
      readonly name: string;
      readonly previous: readonly ReferencePolicy[];
      readonly actor: TrustActor;
    }
  | {
      readonly kind: 'ekca.replace';
      readonly sha256: string;
      readonly cas: readonly X509Certificate[];
      readonly actor: TrustActor;
    };

export interface AttestationTrustOptions {
  /** The configured bundle (GRANTOR_EK_CA_BUNDLE), used until an operator replaces it. */
  readonly configuredEkCaPem: string;
  /** The configured rules (GRANTOR_ENROLLMENT_RULES), used until an operator replaces them. */
  readonly configuredEnrollmentRules?: EnrollmentRuleSet;
  readonly referencePolicies: readonly ReferencePolicy[];
  /** Where replacements and disabled marks are kept (e.g. `<stateDir>/attestation`). */
  readonly stateDir: string;
  readonly audit: AuditSink;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
}

interface EkCaState {
  readonly pem: string;
  readonly sha256: string;
  readonly cas: readonly X509Certificate[];
  readonly source: 'configuration' | 'replaced';
  readonly replacedAt?: string;
  readonly replacedBy?: string;
}

const EK_CA_FILE = 'ek-ca.json';
const POLICIES_FILE = 'reference-policies.json';
const RULES_FILE = 'enrollment-rules.json';

interface RulesState {
  readonly set: EnrollmentRuleSet;
  readonly sha256: string;
  readonly source: 'configuration' | 'replaced';
  readonly replacedAt?: string;
  readonly replacedBy?: string;
}

export function bundleSha256(pem: string): string {
  return createHash('sha256').update(pem, 'utf8').digest('hex');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(path, 'is not JSON: the persisted trust state is damaged');
  }
}

/** A replaced bundle from the state folder; damage stops the start (fail closed). */
async function loadReplacedEkCa(path: string): Promise<EkCaState | undefined> {
  const raw = await readJson(path);
  if (raw === undefined) return undefined;
  const bad = (why: string) => new ConfigError(path, `${why}: the persisted EK CA is damaged`);
  if (!isRecord(raw) || typeof raw.pem !== 'string' || typeof raw.sha256 !== 'string')
    throw bad('missing members');
  if (bundleSha256(raw.pem) !== raw.sha256) throw bad('digest mismatch');
  const cas = parseCaBundle(raw.pem);
  if (cas.length === 0) throw bad('no certificate');
  return {
    pem: raw.pem,
    sha256: raw.sha256,
    cas,
    source: 'replaced',
    ...(typeof raw.replacedAt === 'string' ? { replacedAt: raw.replacedAt } : {}),
    ...(typeof raw.replacedBy === 'string' ? { replacedBy: raw.replacedBy } : {}),
  };
}

/** Replaced rules from the state folder; damage stops the start (fail closed). */
async function loadReplacedRules(path: string): Promise<RulesState | undefined> {
  const raw = await readJson(path);
  if (raw === undefined) return undefined;
  if (!isRecord(raw) || typeof raw.sha256 !== 'string')
    throw new ConfigError(path, 'missing members: the persisted enrollment rules are damaged');
  const set = parseEnrollmentRules(raw.ruleSet, path);
  if (ruleSetSha256(set) !== raw.sha256)
    throw new ConfigError(path, 'digest mismatch: the persisted enrollment rules are damaged');
  return {
    set,
    sha256: raw.sha256,
    source: 'replaced',
    ...(typeof raw.replacedAt === 'string' ? { replacedAt: raw.replacedAt } : {}),
    ...(typeof raw.replacedBy === 'string' ? { replacedBy: raw.replacedBy } : {}),
  };
}

async function loadDisabled(path: string): Promise<Map<string, DisabledMark>> {
  const raw = await readJson(path);
  const out = new Map<string, DisabledMark>();
  if (raw === undefined) return out;
  if (!isRecord(raw) || !isRecord(raw.disabled))
    throw new ConfigError(path, 'the persisted reference policy state is damaged');
  for (const [name, mark] of Object.entries(raw.disabled)) {
    if (!isRecord(mark) || typeof mark.at !== 'string' || typeof mark.by !== 'string')
      throw new ConfigError(path, `the persisted mark of ${name} is damaged`);
    out.set(name, { at: mark.at, by: mark.by });
  }
  return out;
}

/** Write `data` to a temporary file next to `path`; the caller renames it into place. */
async function stage(path: string, data: unknown): Promise<string> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600, flush: true });
  return tmp;
}

export class AttestationTrust {
  #ekCa: EkCaState;
  #rules: RulesState;
  #policies: ReferencePolicyRegistry;
  /** Operator-put policies and their previous versions (reference-policy-versions.ts). */
  #put: ReadonlyMap<string, PolicyHistory> = new Map();
  readonly #dir: string;
  readonly #audit: AuditSink;
  readonly #now: () => Date;
  // One change at a time: each reads the state the previous one left.
  #tail: Promise<unknown> = Promise.resolve();
  #onWithdrawn: ((change: TrustWithdrawal) => Promise<unknown>) | undefined;

  private constructor(
    ekCa: EkCaState,
    rules: RulesState,
    policies: ReferencePolicyRegistry,
    options: AttestationTrustOptions,
  ) {
    this.#ekCa = ekCa;
    this.#rules = rules;
    this.#policies = policies;
    this.#dir = options.stateDir;
    this.#audit = options.audit;
    const now = options.now ?? Date.now;
    this.#now = () => new Date(now());
  }

  static async open(options: AttestationTrustOptions): Promise<AttestationTrust> {
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    const replaced = await loadReplacedEkCa(join(options.stateDir, EK_CA_FILE));
    let ekCa = replaced;
    if (ekCa === undefined) {
      const cas = parseCaBundle(options.configuredEkCaPem);
      if (cas.length === 0)
        throw new ConfigError('attestation.ekCaBundle', 'no certificate in the EK CA bundle');
      ekCa = {
        pem: options.configuredEkCaPem,
        sha256: bundleSha256(options.configuredEkCaPem),
        cas,
        source: 'configuration',
      };
    }
    const disabled = await loadDisabled(join(options.stateDir, POLICIES_FILE));
    const configuredRules = options.configuredEnrollmentRules ?? EMPTY_RULE_SET;
    const rules = (await loadReplacedRules(join(options.stateDir, RULES_FILE))) ?? {
      set: configuredRules,
      sha256: ruleSetSha256(configuredRules),
      source: 'configuration' as const,
    };
    const putPath = join(options.stateDir, PUT_POLICIES_FILE);
    const put = await loadPutPolicies(putPath);
    const trust = new AttestationTrust(
      ekCa,
      rules,
      new ReferencePolicyRegistry(
        mergePutPolicies(options.referencePolicies, put, putPath),
        disabled,
      ),
      options,
    );
    trust.#put = put;
    return trust;
  }

  /**
   * Called after each change that withdraws trust, within the change's turn (the next
   * change waits for it): the cascade to the sessions and grants that rested on it
   * (src/grants/trust-cascade.ts). Its failure is the change's answer; the change stands.
   */
  onTrustWithdrawn(listener: (change: TrustWithdrawal) => Promise<unknown>): void {
    this.#onWithdrawn = listener;
  }

  async #withdrawn(change: TrustWithdrawal): Promise<void> {
    await this.#onWithdrawn?.(change);
  }

  /** The trust anchors enrollment uses now. */
  get trustedEkCas(): readonly X509Certificate[] {
    return this.#ekCa.cas;
  }

  /** The reference policies quote verification may match now (disabled ones left out). */
  get referencePolicies(): readonly ReferencePolicy[] {
    return this.#policies.enabled;
  }

  /** The enrollment rules enrollment uses now. */
  get enrollmentRules(): EnrollmentRuleSet {
    return this.#rules.set;
  }

  enrollmentRulesView(): EnrollmentRulesView {
    const r = this.#rules;
    return {
      sha256: r.sha256,
      source: r.source,
      ...(r.replacedAt === undefined ? {} : { replacedAt: r.replacedAt }),
      ...(r.replacedBy === undefined ? {} : { replacedBy: r.replacedBy }),
      ruleSet: ruleSetJson(r.set),
    };
  }

  /** Validate a replacement set whole (no state change): its digest, for the approvals. */
  checkEnrollmentRules(raw: unknown): { sha256: string; set: EnrollmentRuleSet } {
    let set: EnrollmentRuleSet;
    try {
      set = parseEnrollmentRules(raw, 'request');
    } catch (e) {
      if (e instanceof ConfigError) throw new EnrollmentRulesInvalidError(e.message);
      throw e;
    }
    return { sha256: ruleSetSha256(set), set };
  }

  /** Replace the rules (approvals already consumed by the caller); future enrollments only. */
  replaceEnrollmentRules(set: EnrollmentRuleSet, actor: TrustActor): Promise<EnrollmentRulesView> {
    return this.#serial(async () => {
      const now = this.#now();
      const sha256 = ruleSetSha256(set);
      const path = join(this.#dir, RULES_FILE);
      const replacedAt = now.toISOString();
      const tmp = await stage(path, {
        ruleSet: ruleSetJson(set),
        sha256,
        replacedAt,
        replacedBy: actor.id,
      });
      await this.#record(tmp, {
        type: 'attestation.enrollrules.replace',
        subject: `sha256:${sha256}`,
        decision: 'replaced',
        reasons: [
          `${actor.role}:${actor.id}`,
          `rules:${set.rules.length}`,
          `previous:sha256:${this.#rules.sha256}`,
        ],
        digest: jcsSha256Hex({ sha256, previous: this.#rules.sha256, actor: actor.id }),
        facts: {
          actor: factId(actor.id),
          name: null,
          contentDigest: factHex(sha256),
          previous: factText(this.#rules.sha256),
          count: set.rules.length,
        },
      });
      await rename(tmp, path);
      this.#rules = { set, sha256, source: 'replaced', replacedAt, replacedBy: actor.id };
      return this.enrollmentRulesView();
    });
  }

  ekCa(): EkCaView {
    const s = this.#ekCa;
    return {
      sha256: s.sha256,
      source: s.source,
      ...(s.replacedAt === undefined ? {} : { replacedAt: s.replacedAt }),
      ...(s.replacedBy === undefined ? {} : { replacedBy: s.replacedBy }),
      certificates: s.cas.map(describeCertificate),
    };
  }

  /** Validate a replacement bundle (no state change): its digest, for the approvals. */
  checkEkCa(pem: string): { sha256: string; certificates: number } {
    return {
      sha256: bundleSha256(pem),
      certificates: validateEkCaBundle(pem, this.#now()).length,
    };
  }

  /** Replace the bundle (approvals already consumed by the caller). */
  replaceEkCa(pem: string, actor: TrustActor): Promise<EkCaView> {
    const text = pem;
    return this.#serial(async () => {
      const now = this.#now();
      const cas = validateEkCaBundle(text, now);
      const sha256 = bundleSha256(text);
      const next: EkCaState = {
        pem: text,
        sha256,
        cas,
        source: 'replaced',
        replacedAt: now.toISOString(),
        replacedBy: actor.id,
      };
      const path = join(this.#dir, EK_CA_FILE);
      const tmp = await stage(path, {
        pem: text,
        sha256,
        replacedAt: next.replacedAt,
        replacedBy: actor.id,
      });
      await this.#record(tmp, {
        type: 'attestation.ekca.replace',
        subject: `sha256:${sha256}`,
        decision: 'replaced',
        reasons: [
          `${actor.role}:${actor.id}`,
          `certificates:${cas.length}`,
          `previous:sha256:${this.#ekCa.sha256}`,
        ],
        digest: jcsSha256Hex({ sha256, previous: this.#ekCa.sha256, actor: actor.id }),
        facts: {
          actor: factId(actor.id),
          name: null,
          contentDigest: factHex(sha256),
          previous: factText(this.#ekCa.sha256),
          count: cas.length,
        },
      });
      await rename(tmp, path);
      this.#ekCa = next;
      await this.#withdrawn({ kind: 'ekca.replace', sha256, cas, actor });
      return this.ekCa();
    });
  }

  referencePolicyViews(): ReferencePolicyView[] {
    return this.#policies.list().map(({ policy, disabled }) => ({
      name: policy.name,
      selector: { ...policy.selector },
      enabled: disabled === undefined,
      ...(disabled === undefined ? {} : { disabledAt: disabled.at, disabledBy: disabled.by }),
    }));
  }

  /** Throws reference_policy_not_found or reference_policy_state_invalid. */
  checkReferencePolicy(name: string, expectEnabled: boolean): void {
    this.#policies.check(name, expectEnabled);
  }

  /** Disable or enable `name` (approvals, where needed, already consumed by the caller). */
  setReferencePolicyEnabled(
    name: string,
    enabled: boolean,
    actor: TrustActor,
  ): Promise<ReferencePolicyView> {
    return this.#serial(async () => {
      this.#policies.check(name, !enabled);
      const previous = this.#policies.enabled;
      const now = this.#now();
      const next = this.#policies.next(
        name,
        enabled ? undefined : { at: now.toISOString(), by: actor.id },
      );
      const path = join(this.#dir, POLICIES_FILE);
      const tmp = await stage(path, { disabled: Object.fromEntries(next) });
      await this.#record(tmp, {
        type: enabled ? 'attestation.refpolicy.enable' : 'attestation.refpolicy.disable',
        subject: name,
        decision: enabled ? 'enabled' : 'disabled',
        reasons: [`${actor.role}:${actor.id}`],
        digest: jcsSha256Hex({ name, enabled, actor: actor.id, at: now.toISOString() }),
        facts: {
          actor: factId(actor.id),
          name: factText(name),
          contentDigest: null,
          previous: null,
          count: null,
        },
      });
      await rename(tmp, path);
      this.#policies.apply(next);
      if (!enabled) await this.#withdrawn({ kind: 'refpolicy.disable', name, previous, actor });
      const view = this.referencePolicyViews().find((p) => p.name === name);
      if (view === undefined) throw new TypeError(`reference policy ${name} vanished`);
      return view;
    });
  }

  /**
   * Validate a policy an operator wants to add or replace (no state change): the JCS
   * SHA-256 of its JSON, which the `refpolicy.put` approvals bind.
   */
  checkPutReferencePolicy(name: string, json: unknown): { sha256: string } {
    const policy = parsePolicyJson(json, `put:${name}`);
    if (policy.name !== name)
      throw new ConfigError(`put:${name}`, 'the policy name is not the one in the path');
    return { sha256: policySha256(json) };
  }

  /** Add or replace a policy (approvals already consumed); the previous version is kept. */
  putReferencePolicy(
    name: string,
    json: Record<string, unknown>,
    actor: TrustActor,
  ): Promise<{ name: string; sha256: string; replaced: boolean; versions: number }> {
    const copy = JSON.parse(JSON.stringify(json)) as Record<string, unknown>;
    return this.#serial(async () => {
      const policy = parsePolicyJson(copy, `put:${name}`);
      const now = this.#now().toISOString();
      const sha256 = policySha256(copy);
      const existing = this.#policies.list().find((p) => p.policy.name === name);
      const configured =
        existing === undefined || this.#put.has(name)
          ? undefined
          : {
              policy: { name, configured: true },
              sha256: policySha256({ name, configured: true }),
              at: now,
              by: 'configuration',
            };
      const next = nextHistory(
        this.#put,
        name,
        { policy: copy, sha256, at: now, by: actor.id },
        configured,
      );
      const path = join(this.#dir, PUT_POLICIES_FILE);
      const tmp = await stage(path, {
        policies: Object.fromEntries([...next].map(([n, h]) => [n, h])),
      });
      const previous =
        this.#put.get(name)?.current.sha256 ?? (existing === undefined ? null : 'configuration');
      await this.#record(tmp, {
        type: 'attestation.refpolicy.put',
        subject: name,
        decision: existing === undefined ? 'added' : 'replaced',
        reasons: [
          `${actor.role}:${actor.id}`,
          `sha256:${sha256}`,
          `previous:${previous ?? 'none'}`,
        ],
        digest: jcsSha256Hex({ name, sha256, previous, actor: actor.id, at: now }),
        facts: {
          actor: factId(actor.id),
          name: factText(name),
          contentDigest: factHex(sha256),
          previous: previous === null ? null : factText(previous),
          count: null,
        },
      });
      await rename(tmp, path);
      const all = this.#policies.list().map((p) => p.policy);
      const merged =
        existing === undefined ? [...all, policy] : all.map((p) => (p.name === name ? policy : p));
      const previousEnabled = this.#policies.enabled;
      this.#policies = new ReferencePolicyRegistry(merged, this.#policies.disabled);
      this.#put = next;
      if (existing !== undefined) {
        await this.#withdrawn({
          kind: 'refpolicy.put',
          name,
          previous: previousEnabled,
          actor,
        });
      }
      return {
        name,
        sha256,
        replaced: existing !== undefined,
        versions: (next.get(name)?.previous.length ?? 0) + 1,
      };
    });
  }

  /** The operator-put versions of a policy, newest first (undefined: only configured). */
  referencePolicyHistory(name: string): PolicyHistory | undefined {
    return this.#put.get(name);
  }

  async #record(tmp: string, event: Parameters<AuditSink['record']>[0]): Promise<void> {
    try {
      await this.#audit.record(event);
    } catch (e) {
      await rm(tmp, { force: true });
      throw new AuditUnavailableError('the audit log is unavailable', { cause: e });
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
