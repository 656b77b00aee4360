/**
 * The auditor's question asked of an evidence bundle alone (docs/audit.md "Evidence
 * bundles"): what did one runtime do. Its entries in log order (decisions, refusals,
 * redemptions, outcomes, revocations: every entry whose facts name it), each with its `seq`
 * so each line can be proved against the bundle's checkpoint, and for a decision the request
 * body and the policy set that decided, when the bundle carries them. It reads records of a
 * bundle `verifyBundle` accepted and checks nothing itself.
 */
import type { BundlePolicySet, BundleRecord } from './bundle.js';
import type { AuditEntry } from './entry.js';

export interface StoryLine {
  readonly entry: AuditEntry;
  /** The request the entry's digest names (decisions, refusals), when the bundle kept it. */
  readonly body?: string;
  /** The policy set that decided (the facts' `policyHash`), when the bundle carries it. */
  readonly policy?: BundlePolicySet;
}

/** The bundle's records from its lines (NDJSON), blank lines skipped. */
export function bundleRecords(lines: readonly string[]): BundleRecord[] {
  return lines.filter((l) => l !== '').map((l) => JSON.parse(l) as BundleRecord);
}

/** Every entry of the bundle whose facts name `runtimeId`, in log order. */
export function runtimeStory(records: readonly BundleRecord[], runtimeId: string): StoryLine[] {
  const bodies = new Map<string, string>();
  const policies = new Map<string, BundlePolicySet>();
  for (const r of records) {
    if (r.type === 'body') bodies.set(r.digest, r.body);
    else if (r.type === 'policy') policies.set(r.hash, r);
  }
  const story: StoryLine[] = [];
  for (const r of records) {
    if (r.type !== 'entry') continue;
    const facts = r.entry.facts as Readonly<Record<string, unknown>> | undefined;
    if (facts?.runtime !== runtimeId) continue;
    const body = bodies.get(r.entry.digest);
    const policy =
      typeof facts.policyHash === 'string' ? policies.get(facts.policyHash) : undefined;
    story.push({
      entry: r.entry,
      ...(body === undefined ? {} : { body }),
      ...(policy === undefined ? {} : { policy }),
    });
  }
  return story.sort((a, b) => a.entry.seq - b.entry.seq);
}
