/**
 * The typed facts of a version-2 audit entry (docs/protocol.md §4, "Entry facts"): what
 * happened, per entry type, covered by the entry hash. One schema per type; an entry of a
 * type without a schema carries no facts (and stays a version-1 entry). Facts hold ids,
 * bounded names, digests, counts and times only: no field takes a parameter value or a
 * secret, and every field of a type is present (null where it does not apply), so two
 * entries of one type always have the same shape.
 */

import { createHash } from 'node:crypto';

/** One fact value: ids and names, digests, integers, flags, null, or a list of ids. */
export type FactValue = string | number | boolean | null | readonly string[];

/** `id`: an id (`rt_...`, `gr_...`, a key id); `text`: a bounded name (action, resource). */
type Kind = 'id' | 'text' | 'hex' | 'time' | 'int' | 'bool' | 'ids';
/** A field: its kind, and whether it may be null. */
type Field = readonly [Kind, 'nullable'?];

const ID = /^[A-Za-z0-9_.:@/+-]{1,128}$/;
const HEX32 = /^[0-9a-f]{64}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
// Printable, no control characters (a fact is never a place for arbitrary bytes).
// eslint-disable-next-line no-control-regex -- the control characters are what it excludes
const TEXT = /^[^\u0000-\u001f\u007f]{1,512}$/u;
const MAX_IDS = 32;

/** A grant request decided by the policy (allow or deny), or failed after an allow. */
export type GrantDecisionFacts = {
  readonly runtime: string;
  readonly action: string;
  readonly resource: string;
  readonly audience: string;
  readonly parent: string | null;
  readonly requestId: string;
  readonly parametersDigest: string;
  readonly proofMode: 'session' | 'quote';
  readonly attestationId: string | null;
  readonly policyHash: string;
  /** The policies that decided (allow: the permits; deny: the forbids, when named). */
  readonly matchedPolicies: readonly string[];
  /** The grant key active at the decision (it signs the grant); null on a deny. */
  readonly keyId: string | null;
  /** The grant's expiry; null on a deny. */
  readonly expiresAt: string | null;
};

/**
 * Refusals of one (claimed runtime, code) in one window. `runtime` is what the request
 * claimed: a refusal is often exactly a request whose claim did not hold.
 */
export type GrantRefusedFacts = {
  readonly runtime: string;
  readonly code: string;
  /** The first refused request of the window (its id and body digest are the entry's). */
  readonly requestId: string;
  /** Refusals of this key in its previous window that were counted, not written. */
  readonly repeats: number;
  /** Refusals counted, not written, since the last refusal entry (budgets, evictions). */
  readonly dropped: number;
};

export type GrantRedeemFacts = {
  readonly grant: string;
  readonly runtime: string;
  /** The enrolled gateway that redeemed (its authenticated id, `ggw_…`). */
  readonly gateway: string;
  readonly outcome: string | null;
};

export type GrantRevokeFacts = {
  /** The grant revoked (null for a runtime's cascade). */
  readonly grant: string | null;
  readonly runtime: string | null;
  readonly actor: string;
  readonly count: number;
  /** SHA-256 of JCS of the sorted revoked ids. */
  readonly idsDigest: string;
};

/** A runtime's attestation (`runtime.attest`) or quote-mode quote (`runtime.quote`) verdict. */
export type AttestationFacts = {
  readonly runtime: string;
  readonly attestationId: string | null;
  readonly ekFingerprint: string | null;
  readonly akName: string;
  readonly referencePolicy: string | null;
  readonly pcrDigest: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly firmware: string | null;
};

/**
 * A `runtime.attest` or `runtime.quote` rejected before a verdict (`decision: rejected`):
 * what the appliance knew of the runtime, the code, and whether the quote was authentic
 * (signed by the runtime's AK: the failure came after the signature verified). Nothing of
 * the unverified quote itself.
 */
export type AttestationRejectedFacts = {
  readonly runtime: string;
  readonly akName: string;
  readonly ekFingerprint: string | null;
  readonly referencePolicy: string | null;
  readonly code: string;
  readonly authentic: boolean;
};

/** An operator's administrative act (`operator.act`) or an approval event. */
export type OperatorActFacts = {
  readonly actor: string;
  readonly role: string;
  readonly act: string;
  readonly target: string | null;
  readonly approvals: readonly string[];
};

/**
 * A runtime's enrollment and registry events (`runtime.enroll`, `runtime.enroll_expired`,
 * `runtime.activate`, `runtime.approve`, `runtime.revoke`, `runtime.labels.assign`,
 * `runtime.release`). `actor` is the operator when the service is told who acted (labels,
 * release), else null (the act's own `operator.act` entry names them).
 */
export type RuntimeEventFacts = {
  readonly runtime: string;
  readonly akName: string | null;
  readonly ekFingerprint: string | null;
  readonly actor: string | null;
  /** The enrollment rule that matched (`runtime.enroll`), else null. */
  readonly rule: string | null;
  /** SHA-256 of JCS of the labels the runtime has after the event, when it changes them. */
  readonly labelsDigest: string | null;
};

/** A runtime's firmware version other than its last quote's (`runtime.firmware`). */
export type RuntimeFirmwareFacts = {
  readonly runtime: string;
  readonly akName: string;
  readonly previous: string;
  readonly current: string;
};

/** A change of the attestation trust material (`attestation.*`): rules, EK CAs, policies. */
export type TrustChangeFacts = {
  readonly actor: string;
  /** The reference policy concerned; null for the rule set and the EK CA bundle. */
  readonly name: string | null;
  /** SHA-256 of the new content; null when only a state changes (enable, disable). */
  readonly contentDigest: string | null;
  /** SHA-256 of the content replaced (`configuration` or null when there was none). */
  readonly previous: string | null;
  /** Rules or certificates in the new content; null where it does not apply. */
  readonly count: number | null;
};

/** One step of a dual-control request (`approval.requested`, `.given`, `.consumed`). */
export type ApprovalFacts = {
  readonly approval: string;
  readonly act: string;
  readonly target: string;
  /** SHA-256 of JCS of the act's parameters (never the parameters). */
  readonly paramsDigest: string;
  /** Who requested or approved; for `approval.consumed`, the approvers. */
  readonly actors: readonly string[];
};

/** A change to who may act: people, tokens, certificates, gateways (`operator.*`, `gateway.*`). */
export type CredentialFacts = {
  /** The credential (`tok_…`, `cert:…`, `gw_…`) or, for registry events, the person id. */
  readonly credential: string;
  readonly person: string | null;
  /** Who made the change (`person:credential`, or `cli`). */
  readonly actor: string;
  readonly roles: readonly string[];
  readonly audiences: readonly string[];
};

/** A grant or audit key's lifecycle event (`key.created`, `.rotated`, `.retired`, ...). */
export type KeyLifecycleFacts = {
  readonly kid: string;
  readonly purpose: string;
  readonly previousKid: string | null;
  readonly reason: string;
};

/** A policy set activated (`policy.reloaded`) or refused (`policy.reload_refused`). */
export type PolicyReloadFacts = {
  /** The set active after the event (the new one, or the one that stays); null if none. */
  readonly policyHash: string | null;
  readonly version: number | null;
  /** The operator who asked, or `watch` (the file watch). */
  readonly by: string;
  /** The refusal's code; null when the set was activated. */
  readonly code: string | null;
};

/** A gateway's report of what a redeemed grant did (`grant.outcome`). */
export type GrantOutcomeFacts = {
  readonly grant: string;
  readonly runtime: string;
  readonly gateway: string;
  readonly outcome: string;
  /** The gateway's SHA-256 of the action's result (unverified by grantor), or null. */
  readonly resultDigest: string | null;
};

/** Refused operator attempts of one (identity, code) in one window (`operator.refused`). */
export type OperatorRefusedFacts = {
  /** The credential or certificate presented, when one was; null when none. */
  readonly identity: string | null;
  readonly person: string | null;
  readonly address: string;
  readonly code: string;
  /** `METHOD /route` of the first refused attempt. */
  readonly act: string;
  readonly repeats: number;
  readonly dropped: number;
};

/** A log period's first entry (`audit.period.started`, periods.ts): the previous one's end. */
export type PeriodStartedFacts = {
  readonly period: number;
  readonly previousPeriod: number;
  readonly previousOrigin: string;
  readonly previousSize: number;
  /** The previous period's final tree root, hex. */
  readonly previousRoot: string;
  /** The TPM counter after the previous period's last batch, decimal. */
  readonly previousCounter: string;
  /** The TPM extend value after the previous period's last batch, hex. */
  readonly previousExtend: string;
  /** The operator who asked, or `schedule` (GRANTOR_AUDIT_PERIOD_HOURS). */
  readonly actor: string;
};

/** A frozen period's entries moved out (`audit.period.retired`, retention.ts). */
export type PeriodRetiredFacts = {
  readonly period: number;
  /** The first and one past the last seq retired. */
  readonly from: number;
  readonly to: number;
  /** SHA-256 of the bundle file that holds them, hex. */
  readonly bundleDigest: string;
  /** The operator who asked. */
  readonly actor: string;
};

export interface FactsByType {
  readonly 'grant.decision': GrantDecisionFacts;
  readonly 'grant.issue_failed': GrantDecisionFacts;
  readonly 'grant.refused': GrantRefusedFacts;
  readonly 'grant.redeem': GrantRedeemFacts;
  readonly 'grant.revoke': GrantRevokeFacts;
  readonly 'runtime.attest': AttestationFacts;
  readonly 'runtime.quote': AttestationFacts;
  readonly 'operator.act': OperatorActFacts;
  readonly 'runtime.enroll': RuntimeEventFacts;
  readonly 'runtime.enroll_expired': RuntimeEventFacts;
  readonly 'runtime.activate': RuntimeEventFacts;
  readonly 'runtime.approve': RuntimeEventFacts;
  readonly 'runtime.revoke': RuntimeEventFacts;
  readonly 'runtime.labels.assign': RuntimeEventFacts;
  readonly 'runtime.release': RuntimeEventFacts;
  readonly 'runtime.firmware': RuntimeFirmwareFacts;
  readonly 'attestation.enrollrules.replace': TrustChangeFacts;
  readonly 'attestation.ekca.replace': TrustChangeFacts;
  readonly 'attestation.refpolicy.put': TrustChangeFacts;
  readonly 'attestation.refpolicy.enable': TrustChangeFacts;
  readonly 'attestation.refpolicy.disable': TrustChangeFacts;
  readonly 'approval.requested': ApprovalFacts;
  readonly 'approval.given': ApprovalFacts;
  readonly 'approval.consumed': ApprovalFacts;
  readonly 'operator.registered': CredentialFacts;
  readonly 'operator.removed': CredentialFacts;
  readonly 'operator.token_created': CredentialFacts;
  readonly 'operator.token_revoked': CredentialFacts;
  readonly 'operator.certificate_revoked': CredentialFacts;
  readonly 'gateway.enrolled': CredentialFacts;
  readonly 'gateway.revoked': CredentialFacts;
  readonly 'key.created': KeyLifecycleFacts;
  readonly 'key.rotated': KeyLifecycleFacts;
  readonly 'key.retired': KeyLifecycleFacts;
  readonly 'key.destroyed': KeyLifecycleFacts;
  readonly 'key.published': KeyLifecycleFacts;
  readonly 'policy.reloaded': PolicyReloadFacts;
  readonly 'policy.reload_refused': PolicyReloadFacts;
  readonly 'grant.outcome': GrantOutcomeFacts;
  readonly 'operator.refused': OperatorRefusedFacts;
  readonly 'audit.period.started': PeriodStartedFacts;
  readonly 'audit.period.retired': PeriodRetiredFacts;
}

const GRANT_DECISION: Record<keyof GrantDecisionFacts, Field> = {
  runtime: ['id'],
  action: ['text'],
  resource: ['text'],
  audience: ['text'],
  parent: ['id', 'nullable'],
  requestId: ['text'],
  parametersDigest: ['hex'],
  proofMode: ['id'],
  attestationId: ['id', 'nullable'],
  policyHash: ['hex'],
  matchedPolicies: ['ids'],
  keyId: ['id', 'nullable'],
  expiresAt: ['time', 'nullable'],
};

const ATTESTATION: Record<keyof AttestationFacts, Field> = {
  runtime: ['id'],
  attestationId: ['id', 'nullable'],
  ekFingerprint: ['hex', 'nullable'],
  akName: ['text'],
  referencePolicy: ['text', 'nullable'],
  pcrDigest: ['text'],
  resetCount: ['int'],
  restartCount: ['int'],
  firmware: ['text', 'nullable'],
};

const ATTESTATION_REJECTED: Record<keyof AttestationRejectedFacts, Field> = {
  runtime: ['id'],
  akName: ['text'],
  ekFingerprint: ['hex', 'nullable'],
  referencePolicy: ['text', 'nullable'],
  code: ['id'],
  authentic: ['bool'],
};

/**
 * Types whose entries have a second shape, told apart by a field only it has: a rejected
 * attestation or quote (`code`) beside the verdict's facts.
 */
const SECOND_SHAPES: Readonly<Record<string, { by: string; schema: Record<string, Field> }>> = {
  'runtime.attest': { by: 'code', schema: ATTESTATION_REJECTED },
  'runtime.quote': { by: 'code', schema: ATTESTATION_REJECTED },
};

const RUNTIME_EVENT: Record<keyof RuntimeEventFacts, Field> = {
  runtime: ['id'],
  akName: ['text', 'nullable'],
  ekFingerprint: ['hex', 'nullable'],
  actor: ['id', 'nullable'],
  rule: ['text', 'nullable'],
  labelsDigest: ['hex', 'nullable'],
};

const TRUST_CHANGE: Record<keyof TrustChangeFacts, Field> = {
  actor: ['id'],
  name: ['text', 'nullable'],
  contentDigest: ['hex', 'nullable'],
  previous: ['text', 'nullable'],
  count: ['int', 'nullable'],
};

const APPROVAL: Record<keyof ApprovalFacts, Field> = {
  approval: ['id'],
  act: ['id'],
  target: ['text'],
  paramsDigest: ['hex'],
  actors: ['ids'],
};

const CREDENTIAL: Record<keyof CredentialFacts, Field> = {
  credential: ['text'],
  person: ['id', 'nullable'],
  actor: ['id'],
  roles: ['ids'],
  audiences: ['ids'],
};

const KEY_LIFECYCLE: Record<keyof KeyLifecycleFacts, Field> = {
  kid: ['id'],
  purpose: ['id'],
  previousKid: ['id', 'nullable'],
  reason: ['id'],
};

const POLICY_RELOAD: Record<keyof PolicyReloadFacts, Field> = {
  policyHash: ['hex', 'nullable'],
  version: ['int', 'nullable'],
  by: ['text'],
  code: ['id', 'nullable'],
};

const SCHEMAS: { readonly [T in keyof FactsByType]: Record<keyof FactsByType[T], Field> } = {
  'grant.decision': GRANT_DECISION,
  'grant.issue_failed': GRANT_DECISION,
  'grant.refused': {
    runtime: ['id'],
    code: ['id'],
    requestId: ['text'],
    repeats: ['int'],
    dropped: ['int'],
  },
  'grant.redeem': {
    grant: ['id'],
    runtime: ['id'],
    gateway: ['text'],
    outcome: ['id', 'nullable'],
  },
  'grant.revoke': {
    grant: ['id', 'nullable'],
    runtime: ['id', 'nullable'],
    actor: ['text'],
    count: ['int'],
    idsDigest: ['hex'],
  },
  'runtime.attest': ATTESTATION,
  'runtime.quote': ATTESTATION,
  'operator.act': {
    actor: ['id'],
    role: ['id'],
    act: ['text'],
    target: ['text', 'nullable'],
    approvals: ['ids'],
  },
  'runtime.enroll': RUNTIME_EVENT,
  'runtime.enroll_expired': RUNTIME_EVENT,
  'runtime.activate': RUNTIME_EVENT,
  'runtime.approve': RUNTIME_EVENT,
  'runtime.revoke': RUNTIME_EVENT,
  'runtime.labels.assign': RUNTIME_EVENT,
  'runtime.release': RUNTIME_EVENT,
  'runtime.firmware': {
    runtime: ['id'],
    akName: ['text'],
    previous: ['text'],
    current: ['text'],
  },
  'attestation.enrollrules.replace': TRUST_CHANGE,
  'attestation.ekca.replace': TRUST_CHANGE,
  'attestation.refpolicy.put': TRUST_CHANGE,
  'attestation.refpolicy.enable': TRUST_CHANGE,
  'attestation.refpolicy.disable': TRUST_CHANGE,
  'approval.requested': APPROVAL,
  'approval.given': APPROVAL,
  'approval.consumed': APPROVAL,
  'operator.registered': CREDENTIAL,
  'operator.removed': CREDENTIAL,
  'operator.token_created': CREDENTIAL,
  'operator.token_revoked': CREDENTIAL,
  'operator.certificate_revoked': CREDENTIAL,
  'gateway.enrolled': CREDENTIAL,
  'gateway.revoked': CREDENTIAL,
  'key.created': KEY_LIFECYCLE,
  'key.rotated': KEY_LIFECYCLE,
  'key.retired': KEY_LIFECYCLE,
  'key.destroyed': KEY_LIFECYCLE,
  'key.published': KEY_LIFECYCLE,
  'policy.reloaded': POLICY_RELOAD,
  'policy.reload_refused': POLICY_RELOAD,
  'grant.outcome': {
    grant: ['id'],
    runtime: ['id'],
    gateway: ['id'],
    outcome: ['id'],
    resultDigest: ['hex', 'nullable'],
  },
  'operator.refused': {
    identity: ['text', 'nullable'],
    person: ['id', 'nullable'],
    address: ['text'],
    code: ['id'],
    act: ['text'],
    repeats: ['int'],
    dropped: ['int'],
  },
  'audit.period.started': {
    period: ['int'],
    previousPeriod: ['int'],
    previousOrigin: ['text'],
    previousSize: ['int'],
    previousRoot: ['hex'],
    previousCounter: ['text'],
    previousExtend: ['hex'],
    actor: ['id'],
  },
  'audit.period.retired': {
    period: ['int'],
    from: ['int'],
    to: ['int'],
    bundleDigest: ['hex'],
    actor: ['id'],
  },
};

/** The facts of any type (an entry's `facts`). */
export type Facts = FactsByType[keyof FactsByType] | AttestationRejectedFacts;

/** One fact by name, whatever the type (undefined when the type has no such fact). */
export function factOf(facts: Facts | undefined, key: string): unknown {
  return facts === undefined ? undefined : (facts as Readonly<Record<string, unknown>>)[key];
}

/** Fact names whose values name who or what an entry is about (indexed as subjects). */
export const SUBJECT_FACTS: readonly string[] = ['runtime', 'grant', 'parent', 'actor'];

function schemaOf(type: string): Record<string, Field> | undefined {
  return Object.hasOwn(SCHEMAS, type)
    ? (SCHEMAS as Record<string, Record<string, Field>>)[type]
    : undefined;
}

/** Types that have facts (the protocol's table). */
export const FACT_TYPES: readonly string[] = Object.keys(SCHEMAS);

function valueProblem(kind: Kind, value: unknown): boolean {
  switch (kind) {
    case 'id':
      return typeof value !== 'string' || !ID.test(value);
    case 'text':
      return typeof value !== 'string' || !TEXT.test(value);
    case 'hex':
      return typeof value !== 'string' || !HEX32.test(value);
    case 'time':
      return typeof value !== 'string' || !TIME.test(value);
    case 'int':
      return typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0;
    case 'bool':
      return typeof value !== 'boolean';
    case 'ids':
      return (
        !Array.isArray(value) ||
        value.length > MAX_IDS ||
        !value.every((v) => typeof v === 'string' && TEXT.test(v))
      );
  }
}

/**
 * The problem with `facts` for an entry of `type`, or undefined when they fit its schema
 * exactly (every field present, no other). Used on append and by every verifier.
 */
export function factsProblem(type: string, facts: unknown): string | undefined {
  const main = schemaOf(type);
  if (main === undefined) return `type ${type} has no facts`;
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) return 'not an object';
  const f = facts as Record<string, unknown>;
  const second = Object.hasOwn(SECOND_SHAPES, type) ? SECOND_SHAPES[type] : undefined;
  const schema = second !== undefined && Object.hasOwn(f, second.by) ? second.schema : main;
  for (const key of Object.keys(f)) if (!Object.hasOwn(schema, key)) return `unknown fact ${key}`;
  for (const [key, [kind, nullable]] of Object.entries(schema)) {
    if (!Object.hasOwn(f, key)) return `missing fact ${key}`;
    const value = f[key];
    if (value === null && nullable === 'nullable') continue;
    if (valueProblem(kind, value)) return `bad fact ${key}`;
  }
  return undefined;
}

/** A frozen copy of checked facts (arrays copied too). */
export function copyFacts(facts: Facts): Facts {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(facts as Readonly<Record<string, unknown>>)) {
    out[k] = Array.isArray(v) ? Object.freeze([...(v as readonly string[])]) : v;
  }
  // Checked by factsProblem before it is copied: the same shape.
  return Object.freeze(out) as unknown as Facts;
}

/**
 * A value someone else wrote, as an `id` fact: itself when it is one, else `digest:` and its
 * SHA-256, so a fact never refuses the act it records.
 */
export function factId(value: string): string {
  return ID.test(value)
    ? value
    : `digest:${createHash('sha256').update(value, 'utf8').digest('hex')}`;
}

/** A value as a `text` fact (control characters are never written; digested instead). */
export function factText(value: string): string {
  return TEXT.test(value)
    ? value
    : `digest:${createHash('sha256').update(value, 'utf8').digest('hex')}`;
}

/** A list as an `ids` fact: each a text fact, at most 32 (the rest counted). */
export function factList(values: readonly string[]): string[] {
  const fitted = values.map(factText);
  return fitted.length <= MAX_IDS
    ? fitted
    : [...fitted.slice(0, MAX_IDS - 1), `and ${fitted.length - (MAX_IDS - 1)} more`];
}

/** A hex SHA-256 as a `hex` fact, or null when it is none. */
export function factHex(value: string | null | undefined): string | null {
  return typeof value === 'string' && HEX32.test(value) ? value : null;
}
