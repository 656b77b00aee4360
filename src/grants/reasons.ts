/**
 * How the grant path writes what it decided into an audit entry's reasons, within the
 * entry's limits (claimed ids and names become facts through src/audit/facts.ts).
 */
import { fitReason } from '../audit/index.js';

/**
 * The first reason of every `grant.decision` entry: the content hash of the policy set that
 * decided (the grant's `pol`). PROTOCOL.md §4 gives an entry no field of its own for it.
 */
export const policyReason = (policyHash: string): string => `pol:${policyHash}`;

/**
 * An audit entry holds at most 32 reasons of at most 256 characters (src/audit/entry.ts):
 * a decision with more is recorded with the rest counted and long ones cut, never refused
 * by the log (which would fail the request closed for a policy's wording).
 */
export const MAX_AUDIT_REASONS = 32;

export function auditReasons(policyHash: string, reasons: readonly string[]): string[] {
  const room = MAX_AUDIT_REASONS - 1;
  const listed =
    reasons.length <= room
      ? reasons
      : [...reasons.slice(0, room - 1), `and ${reasons.length - (room - 1)} more`];
  return [policyReason(policyHash), ...listed.map(fitReason)];
}
