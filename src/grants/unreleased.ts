/**
 * Allows whose grant never left the appliance, marked at start-up.
 *
 * The pipeline commits a `grant.decision` allow before it signs, stores and returns the
 * grant, and marks any allow it then fails to return with `grant.issue_failed`. A process
 * that dies in between (a crash, a kill, a power cut), or whose marking append itself
 * fails, leaves an allow without a grant and without a mark. A grant is returned only
 * after its record is stored, so an allow with neither a record nor a mark was never
 * released: at start-up, before the service decides anything, such allows are marked
 * `grant.issue_failed` with the reason `not_released` (the allow's digest, same subject).
 *
 * The scan starts where the last one ended (`reconciledUpTo`, kept in the grant store) and
 * reads the log in pages: each start costs the entries written since the previous start.
 */
import { AuditNotFoundError, type AuditEntry, type AuditService } from '../audit/index.js';
import type { GrantStore } from './grant-store.port.js';

export const NOT_RELEASED = 'not_released';
const PAGE = 1000;

export type UnreleasedAudit = Pick<AuditService, 'entries' | 'append'>;
export type UnreleasedStore = Pick<GrantStore, 'get' | 'reconciledUpTo' | 'setReconciledUpTo'>;

/**
 * Marks every unreleased allow from `reconciledUpTo` to the end of the log; returns how
 * many were marked. Must run while no request of this process can be between its allow
 * and its grant record (the service runs it before it decides anything).
 */
export async function markUnreleased(
  audit: UnreleasedAudit,
  store: UnreleasedStore,
  pageSize = PAGE,
): Promise<number> {
  let next = await store.reconciledUpTo();
  /** Allows since the mark with no grant record yet: subject -> the allow's digest. */
  const open = new Map<string, string>();
  for (;;) {
    let page: AuditEntry[];
    try {
      page = await audit.entries(next, pageSize);
    } catch (e) {
      // The log answers "no such entry" past its end.
      if (e instanceof AuditNotFoundError) break;
      throw e;
    }
    const last = page.at(-1);
    if (last === undefined) break;
    for (const e of page) {
      if (e.type === 'grant.decision' && e.decision === 'allow') {
        if ((await store.get(e.subject)) === undefined) open.set(e.subject, e.digest);
      } else if (e.type === 'grant.issue_failed') {
        open.delete(e.subject);
      }
    }
    next = last.seq + 1;
  }
  // Appended together: they join one audit batch (one anchor), not one each. If some fail,
  // the mark stays and the next start finds only the ones still unmarked.
  await Promise.all(
    [...open].map(([subject, digest]) =>
      audit.append({
        type: 'grant.issue_failed',
        subject,
        decision: 'failed',
        reasons: [NOT_RELEASED],
        digest,
      }),
    ),
  );
  await store.setReconciledUpTo(next);
  return open.size;
}
