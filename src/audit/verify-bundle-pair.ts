/**
 * Two archived bundles compared across a log period switch (`grantor audit verify A B`,
 * docs/audit.md "Retention"): each bundle has already been verified on its own with the
 * same verifier key and anchor pin (verify-bundle.ts); this checks that B's period starts
 * exactly where A's ends, from the two reports alone. A flat list of guards, in order, each
 * refusal its own problem code:
 *
 *   1. one log: the same base origin (the key and the pin are the one pair the auditor gave
 *      for both, so both notes are signed by one appliance and both anchors are its TPM's);
 *   2. the earlier period first (`pair_order`), and B's period is A's + 1
 *      (`pair_not_consecutive`);
 *   3. B's link (its entry 0, proved as leaf 0 of B's signed and anchored tree) names
 *      exactly A's checkpoint: period, origin, size, root, nv-counter, nv-extend. When A
 *      was exported while its period was current, a checkpoint other than the one the link
 *      names is `pair_not_final` (A stops short of its period's end: export it again, now
 *      frozen); when A is a frozen period's bundle it is `pair_link_mismatch`;
 *   4. a frozen A carries the next period's link in its own successor chain: it must be B's
 *      link, the same entry (`pair_chain_mismatch`: two histories of B's period).
 */
import type { AuditEntry } from './entry.js';
import { BundlePairInvalidError } from './errors.js';
import { linkProblem, linkedPreviousSize, type PeriodEnd } from './periods.js';
import { baseOrigin, type BundleReport } from './verify-bundle.js';

/** What tied the two bundles, for the report. */
export interface BundlePairReport {
  /** The log's base origin (period 0's). */
  readonly log: string;
  /** A's end, as B's link names it. */
  readonly end: PeriodEnd;
  /** B's link entry's hash. */
  readonly linkHash: string;
  /**
   * `successor_chain`: A is a frozen period's bundle, and its own chain carries B's link;
   * `exported_at_end`: A was exported while current, at exactly the end B's link names.
   */
  readonly tiedBy: 'successor_chain' | 'exported_at_end';
  /**
   * Entries proved by the checkpoints but carried by neither bundle (a sub-range exported):
   * the tie holds, the entries themselves are not in the auditor's hands.
   */
  readonly warnings: readonly string[];
}

export function verifyBundlePair(a: BundleReport, b: BundleReport): BundlePairReport {
  const log = baseOrigin(a.origin);
  if (baseOrigin(b.origin) !== log) {
    throw new BundlePairInvalidError(
      'pair_other_log',
      `the bundles are of two logs: ${a.origin} and ${b.origin}`,
    );
  }
  const m = a.end.period;
  const n = b.end.period;
  if (n < m) {
    throw new BundlePairInvalidError(
      'pair_order',
      `the first bundle is period ${m}, the second period ${n}: give the earlier period's bundle first`,
    );
  }
  if (n !== m + 1) {
    throw new BundlePairInvalidError(
      'pair_not_consecutive',
      n === m
        ? `both bundles are of period ${m}`
        : `period ${n} does not follow period ${m}: periods ${m + 1}..${n - 1} lie between them`,
    );
  }
  // A later period's bundle never verifies without its link (verify-bundle.ts, `link`).
  const link: AuditEntry | undefined = b.link;
  if (link === undefined) {
    throw new BundlePairInvalidError('pair_link_mismatch', `period ${n}'s bundle has no link`);
  }
  const problem = linkProblem(link, a.end, n);
  if (problem !== undefined) {
    const named = linkedPreviousSize(link);
    const where = `period ${n}'s link names another end of period ${m} than the first bundle's checkpoint (size ${a.end.size}; ${problem}${named === undefined ? '' : `, the link names size ${named}`})`;
    if (a.successors === 0 && named !== undefined && named > a.end.size) {
      // Exported while current: its checkpoint was the head then, and entries came after.
      throw new BundlePairInvalidError(
        'pair_not_final',
        `${where}: the first bundle was exported while period ${m} was current, before its final checkpoint; export period ${m} again (--period ${m})`,
      );
    }
    throw new BundlePairInvalidError('pair_link_mismatch', where);
  }
  const carried = a.nextLink;
  if (a.successors > 0 && carried?.hash !== link.hash) {
    throw new BundlePairInvalidError(
      'pair_chain_mismatch',
      `the first bundle's successor chain carries another link of period ${n} (entry ${carried?.hash ?? 'none'}) than the second bundle's (entry ${link.hash})`,
    );
  }
  const warnings: string[] = [];
  if (a.to < a.treeSize) {
    warnings.push(`entries ${a.to}..${a.treeSize - 1} of period ${m} are in neither bundle`);
  }
  // Entry 0 of B's period is its link, carried by every bundle of it.
  if (b.from > 1) warnings.push(`entries 1..${b.from - 1} of period ${n} are in neither bundle`);
  return {
    log,
    end: a.end,
    linkHash: link.hash,
    tiedBy: a.successors > 0 ? 'successor_chain' : 'exported_at_end',
    warnings,
  };
}
