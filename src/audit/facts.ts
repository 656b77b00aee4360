/**
 * The typed facts of a version-2 audit entry (docs/protocol.md §4, "Entry facts"): what
 * happened, per entry type, covered by the entry hash. One schema per type; an entry of a
 * type without a schema carries no facts (and stays a version-1 entry). Facts hold ids,
 * bounded names, digests, counts and times only: no field takes a parameter value or a
 * secret, and every field of a type is present (null where it does not apply), so two
 * entries of one type always have the same shape.
 */

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

/** An operator's administrative act (`operator.act`) or an approval event. */
export type OperatorActFacts = {
  readonly actor: string;
  readonly role: string;
  readonly act: string;
  readonly target: string | null;
  readonly approvals: readonly string[];
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
};

/** The facts of any type (an entry's `facts`). */
export type Facts = FactsByType[keyof FactsByType];

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
  const schema = schemaOf(type);
  if (schema === undefined) return `type ${type} has no facts`;
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) return 'not an object';
  const f = facts as Record<string, unknown>;
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
