/**
 * How the grant path writes what it decided into an audit entry: reasons within the
 * entry's limits, and claimed ids and names as facts.
 */
import { fitReason } from '../audit/index.js';
import { sha256Hex } from './context.js';

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

const AUDIT_ID = /^[A-Za-z0-9_.:@/+-]{1,128}$/;
// eslint-disable-next-line no-control-regex -- the control characters are what it excludes
const AUDIT_TEXT = /^[^\u0000-\u001f\u007f]{1,512}$/u;

/**
 * A claimed id as an audit id fact: itself when it is one, else `digest:` and its SHA-256
 * (a refused request's runtime id is whatever the sender wrote).
 */
export function auditId(value: string): string {
  return AUDIT_ID.test(value) ? value : `digest:${sha256Hex(value)}`;
}

/** A claimed name as an audit text fact (control characters are never written). */
export function auditText(value: string): string {
  return AUDIT_TEXT.test(value) ? value : `digest:${sha256Hex(value)}`;
}

/** At most 32 policy ids, each a text fact (the rest counted, like reasons). */
export function auditList(ids: readonly string[]): string[] {
  const fitted = ids.map(auditText);
  return fitted.length <= MAX_AUDIT_REASONS
    ? fitted
    : [
        ...fitted.slice(0, MAX_AUDIT_REASONS - 1),
        `and ${fitted.length - (MAX_AUDIT_REASONS - 1)} more`,
      ];
}
