/**
 * Reference policies added or replaced by operators at run time (dual control, see
 * registrar.ts), persisted with their previous versions: one JSON file in the trust state
 * folder, `{ policies: { <name>: { current: Version, previous: Version[] } } }`, the policy
 * kept as the JSON the operators approved (its JCS SHA-256 is what the approvals bind).
 * A put policy takes precedence over a configured one of the same name, across restarts,
 * like a replaced EK CA bundle. Damage stops the start (fail closed).
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../shared/errors.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import { parseReferencePolicy, type ReferencePolicy } from './reference-policy.js';

export const PUT_POLICIES_FILE = 'reference-policies-put.json';
/** Previous versions kept per policy (the oldest are dropped beyond this). */
export const MAX_PREVIOUS_VERSIONS = 32;

export interface PolicyVersion {
  readonly policy: Record<string, unknown>;
  /** JCS SHA-256 of `policy`: what `refpolicy.put` approvals bind. */
  readonly sha256: string;
  readonly at: string;
  readonly by: string;
}

export interface PolicyHistory {
  readonly current: PolicyVersion;
  readonly previous: readonly PolicyVersion[];
}

export function policySha256(policy: unknown): string {
  return jcsSha256Hex(policy);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function version(raw: unknown, path: string): PolicyVersion {
  if (
    !isRecord(raw) ||
    !isRecord(raw.policy) ||
    typeof raw.at !== 'string' ||
    typeof raw.by !== 'string' ||
    raw.sha256 !== policySha256(raw.policy)
  )
    throw new ConfigError(path, 'a persisted reference policy version is damaged');
  return { policy: raw.policy, sha256: raw.sha256, at: raw.at, by: raw.by };
}

export async function loadPutPolicies(path: string): Promise<Map<string, PolicyHistory>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError(path, 'is not JSON: the persisted reference policies are damaged');
  }
  if (!isRecord(raw) || !isRecord(raw.policies))
    throw new ConfigError(path, 'the persisted reference policies are damaged');
  const out = new Map<string, PolicyHistory>();
  for (const [name, h] of Object.entries(raw.policies)) {
    if (!isRecord(h) || !Array.isArray(h.previous))
      throw new ConfigError(path, `the persisted history of ${name} is damaged`);
    const current = version(h.current, path);
    if (current.policy.name !== name) throw new ConfigError(path, `${name}: name mismatch`);
    out.set(name, { current, previous: h.previous.map((p) => version(p, path)) });
  }
  return out;
}

/** The configured policies with the put ones applied (same name: replaced; new: added). */
export function mergePutPolicies(
  configured: readonly ReferencePolicy[],
  put: ReadonlyMap<string, PolicyHistory>,
  where: string,
): ReferencePolicy[] {
  const parsed = new Map(
    [...put].map(([name, h]) => [name, parseReferencePolicy(h.current.policy, `${where}#${name}`)]),
  );
  const out = configured.map((p) => parsed.get(p.name) ?? p);
  for (const [name, p] of parsed) if (!configured.some((c) => c.name === name)) out.push(p);
  return out;
}

/** The history after putting `next` as the current version of its policy. */
export function nextHistory(
  histories: ReadonlyMap<string, PolicyHistory>,
  name: string,
  next: PolicyVersion,
  configured: PolicyVersion | undefined,
): Map<string, PolicyHistory> {
  const out = new Map(histories);
  const old = out.get(name);
  const previous =
    old === undefined
      ? configured === undefined
        ? []
        : [configured]
      : [old.current, ...old.previous];
  out.set(name, { current: next, previous: previous.slice(0, MAX_PREVIOUS_VERSIONS) });
  return out;
}
