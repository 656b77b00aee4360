/**
 * A policy set: the schema text plus every `*.cedar` file of one directory, content-hashed,
 * parsed, checked (annotations, ids) and validated against the schema. Pure apart from
 * reading files; activation (preparsing into the wasm instance) is the engine's job.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { CedarPort, DetailedError } from './cedar.port.js';
import { PolicySetInvalidError } from './errors.js';
import { jcs } from '../shared/jcs.js';

export interface PolicyFile {
  /** File name relative to the policy directory (e.g. "payments.cedar"). */
  readonly name: string;
  readonly text: string;
}

export interface PolicySource {
  readonly schema: string;
  readonly files: readonly PolicyFile[];
}

export interface CompiledPolicy {
  readonly id: string;
  readonly effect: 'permit' | 'forbid';
  readonly file: string;
  readonly text: string;
  /** `@reason`: the sentence a deny by this forbid policy reports. */
  readonly reason?: string;
  readonly requireQuote: boolean;
  readonly maxTtlSeconds?: number;
  readonly maxDepth?: number;
}

export interface CompiledPolicySet {
  readonly hash: string;
  readonly schema: string;
  readonly files: readonly string[];
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  /** Actions the schema declares (`Action::"<id>"`). */
  readonly actions: ReadonlySet<string>;
  /** Label keys the schema declares on `Runtime.labels`. */
  readonly labelKeys: ReadonlySet<string>;
}

const MAX_FILE_BYTES = 1024 * 1024;
const MAX_FILES = 256;
const KNOWN_ANNOTATIONS = new Set([
  'id',
  'reason',
  'description',
  'requireQuote',
  'maxTtlSeconds',
  'maxDepth',
]);
const OBLIGATIONS = ['requireQuote', 'maxTtlSeconds', 'maxDepth'] as const;
const DECIMAL = /^(0|[1-9][0-9]{0,8})$/;

/**
 * The canonical text of a policy set: RFC 8785 JCS of
 * `{"policies": {<file name>: <file text>, ...}, "schema": <schema text>}`, so the file names
 * are sorted (JCS orders object keys) and both names and contents are covered. The archive
 * keeps exactly this text; the set's hash is the SHA-256 of its bytes.
 */
export function canonicalPolicySet(source: PolicySource): string {
  // fromEntries defines own members: a file named `__proto__` is a file, not a prototype.
  const policies = Object.fromEntries(source.files.map((f) => [f.name, f.text]));
  return jcs({ policies, schema: source.schema });
}

/** Hex SHA-256 of a canonical text (canonicalPolicySet): the name of a set. */
export function canonicalHash(canonical: string): string {
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** The hash of a policy set: hex SHA-256 of its canonical text. */
export function policySetHash(source: PolicySource): string {
  return canonicalHash(canonicalPolicySet(source));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function readText(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    throw new PolicySetInvalidError(`cannot read ${basename(path)}`, { cause });
  }
  if (bytes.length > MAX_FILE_BYTES) {
    throw new PolicySetInvalidError(`${basename(path)} is larger than ${MAX_FILE_BYTES} bytes`);
  }
  try {
    return utf8.decode(bytes);
  } catch (cause) {
    throw new PolicySetInvalidError(`${basename(path)} is not valid UTF-8`, { cause });
  }
}

/** Reads the schema and every `*.cedar` file (not hidden, not recursive) of `policyDir`. */
export async function readPolicySource(
  policyDir: string,
  schemaFile: string,
): Promise<PolicySource> {
  let names: string[];
  try {
    const entries = await readdir(policyDir, { withFileTypes: true });
    names = entries
      .filter((e) => e.isFile() && e.name.endsWith('.cedar') && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
  } catch (cause) {
    throw new PolicySetInvalidError(`cannot list the policy directory`, { cause });
  }
  if (names.length === 0)
    throw new PolicySetInvalidError('the policy directory has no .cedar file');
  if (names.length > MAX_FILES)
    throw new PolicySetInvalidError(`more than ${MAX_FILES} policy files`);
  const schema = await readText(schemaFile);
  const files = await Promise.all(
    names.map(async (name) => ({ name, text: await readText(join(policyDir, name)) })),
  );
  return { schema, files };
}

function describe(errors: readonly DetailedError[]): string {
  return errors.map((e) => e.message).join('; ');
}

/** `line:column` (1-based) of a character offset in `text`. */
export function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return `${lines.length}:${(lines[lines.length - 1] ?? '').length + 1}`;
}

/** Parse errors of one file, each with the line and column Cedar points at. */
function describeIn(text: string, errors: readonly DetailedError[]): string {
  return errors
    .map((e) => {
      const at = e.sourceLocations?.[0];
      return at === undefined ? e.message : `line ${lineAndColumn(text, at.start)}: ${e.message}`;
    })
    .join('; ');
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** Declared actions and `Runtime.labels` keys, read from the resolved JSON schema. */
function schemaFacts(
  cedar: CedarPort,
  schema: string,
): { actions: Set<string>; labelKeys: Set<string> } {
  const answer = cedar.schemaToJsonWithResolvedTypes(schema);
  if (answer.type === 'failure') {
    throw new PolicySetInvalidError(`schema does not parse: ${describe(answer.errors)}`);
  }
  const ns = record(answer.json['']);
  if (ns === undefined) {
    throw new PolicySetInvalidError('schema must declare its types in the empty namespace');
  }
  const actions = new Set(Object.keys(record(ns.actions) ?? {}));
  const commonTypes = record(ns.commonTypes) ?? {};
  const runtime = record(record(ns.entityTypes)?.Runtime);
  let labels = record(record(record(runtime?.shape)?.attributes)?.labels);
  const labelsType = labels?.type;
  if (typeof labelsType === 'string' && labelsType !== 'Record') {
    labels = record(commonTypes[labelsType]);
  }
  const labelAttrs = record(labels?.attributes);
  if (labels?.type !== 'Record' || labelAttrs === undefined) {
    throw new PolicySetInvalidError('schema must declare Runtime.labels as a record');
  }
  const labelKeys = new Set<string>();
  for (const [key, attr] of Object.entries(labelAttrs)) {
    const a = record(attr);
    if (a?.type !== 'String' || a.required !== false) {
      throw new PolicySetInvalidError(`schema: Runtime.labels.${key} must be an optional String`);
    }
    labelKeys.add(key);
  }
  return { actions, labelKeys };
}

function obligationValue(
  id: string,
  key: (typeof OBLIGATIONS)[number],
  value: string,
): boolean | number {
  if (key === 'requireQuote') {
    if (value !== 'true' && value !== 'false') {
      throw new PolicySetInvalidError(`policy ${id}: @requireQuote must be "true" or "false"`);
    }
    return value === 'true';
  }
  if (!DECIMAL.test(value)) {
    throw new PolicySetInvalidError(`policy ${id}: @${key} must be a non-negative integer`);
  }
  return Number(value);
}

function compilePolicy(cedar: CedarPort, file: string, text: string): CompiledPolicy {
  const json = cedar.policyToJson(text);
  if (json.type === 'failure') {
    throw new PolicySetInvalidError(`${file}: ${describe(json.errors)}`);
  }
  const annotations = json.json.annotations ?? {};
  const id = annotations.id;
  // Ids name policies in deny reasons and the audit log; they must not shift when a file
  // is edited, so every policy carries an explicit @id.
  if (id === undefined || id.trim() === '' || id.length > 128) {
    throw new PolicySetInvalidError(`${file}: every policy needs an @id("...") of 1-128 chars`);
  }
  for (const key of Object.keys(annotations)) {
    // A misspelt obligation would silently not apply: refuse what we do not know.
    if (!KNOWN_ANNOTATIONS.has(key)) {
      throw new PolicySetInvalidError(`policy ${id}: unknown annotation @${key}`);
    }
  }
  const effect = json.json.effect;
  let policy: CompiledPolicy = { id, effect, file, text, requireQuote: false };
  if (annotations.reason !== undefined) {
    if (effect !== 'forbid') {
      throw new PolicySetInvalidError(`policy ${id}: @reason belongs on forbid policies`);
    }
    policy = { ...policy, reason: annotations.reason };
  }
  for (const key of OBLIGATIONS) {
    const raw = annotations[key];
    if (raw === undefined) continue;
    if (effect !== 'permit') {
      throw new PolicySetInvalidError(`policy ${id}: @${key} belongs on permit policies`);
    }
    const value = obligationValue(id, key, raw);
    policy =
      key === 'requireQuote'
        ? { ...policy, requireQuote: value === true }
        : { ...policy, [key]: value as number };
  }
  return policy;
}

/**
 * Parses, checks and validates (Cedar strict mode) a policy set. Throws
 * PolicySetInvalidError naming the first problem found.
 */
export function compilePolicySet(cedar: CedarPort, source: PolicySource): CompiledPolicySet {
  const hash = policySetHash(source);
  const facts = schemaFacts(cedar, source.schema);
  const policies = new Map<string, CompiledPolicy>();
  for (const file of source.files) {
    const parts = cedar.policySetTextToParts(file.text);
    if (parts.type === 'failure') {
      throw new PolicySetInvalidError(
        `${file.name} does not parse: ${describeIn(file.text, parts.errors)}`,
        { details: { file: file.name } },
      );
    }
    if (parts.policy_templates.length > 0) {
      throw new PolicySetInvalidError(`${file.name}: templates are not supported`);
    }
    for (const text of parts.policies) {
      const policy = compilePolicy(cedar, file.name, text);
      if (policies.has(policy.id)) {
        throw new PolicySetInvalidError(`${file.name}: duplicate policy id ${policy.id}`);
      }
      policies.set(policy.id, policy);
    }
  }
  if (policies.size === 0) throw new PolicySetInvalidError('the policy set has no policy');
  const validation = cedar.validate({
    schema: source.schema,
    policies: { staticPolicies: staticPolicies(policies) },
    validationSettings: { mode: 'strict' },
  });
  if (validation.type === 'failure') {
    throw new PolicySetInvalidError(`policy set does not validate: ${describe(validation.errors)}`);
  }
  if (validation.validationErrors.length > 0) {
    const first = validation.validationErrors
      .map((e) => `${e.policyId}: ${e.error.message}`)
      .join('; ');
    throw new PolicySetInvalidError(`policy set does not validate against the schema: ${first}`, {
      details: { policies: validation.validationErrors.map((e) => e.policyId) },
    });
  }
  return {
    hash,
    schema: source.schema,
    files: source.files.map((f) => f.name),
    policies,
    actions: facts.actions,
    labelKeys: facts.labelKeys,
  };
}

export function staticPolicies(
  policies: ReadonlyMap<string, CompiledPolicy>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [id, p] of policies) out[id] = p.text;
  return out;
}
