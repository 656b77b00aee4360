/**
 * A filtered read across log periods (periods.ts), for "what did runtime X do" (GET
 * /v1/runtimes/{id}/timeline): each period's own query (query.ts) in order, oldest period
 * first, each entry named with its period (seqs start from 0 in every period). The cursor is
 * a pair: the period and the seq inside it.
 */
import type { AuditEntry } from './entry.js';
import type { AuditFilter } from './query.js';
import type { AuditService } from './service.js';

export interface PeriodCursor {
  readonly period: number;
  readonly seq: number;
}

export interface PeriodsPage {
  readonly entries: { readonly period: number; readonly entry: AuditEntry }[];
  /** Where the next page starts, or null when every period up to the current is read. */
  readonly next: PeriodCursor | null;
}

/** The current period's number; a log that is not serving throws its refusal. */
async function currentOf(audit: AuditService): Promise<number> {
  const known = audit.currentPeriod();
  if (known !== undefined) return known;
  await audit.inPeriod(0);
  return audit.currentPeriod() ?? 0;
}

export async function queryAcrossPeriods(
  audit: AuditService,
  filter: AuditFilter,
  from: PeriodCursor,
  limit: number,
): Promise<PeriodsPage> {
  const entries: { period: number; entry: AuditEntry }[] = [];
  let { period, seq } = from;
  // A period asked for beyond the current one is 404 audit_period_not_found (inPeriod).
  for (;;) {
    const page = await (await audit.inPeriod(period)).query(filter, seq, limit - entries.length);
    for (const entry of page.entries) entries.push({ period, entry });
    // A page cut short (the limit, or the query's scan bound) resumes in this period.
    if (page.next !== null) return { entries, next: { period, seq: page.next } };
    // Read again at each step: a switch during the read adds a period to follow.
    if (period >= (await currentOf(audit))) return { entries, next: null };
    period += 1;
    seq = 0;
    if (entries.length >= limit) return { entries, next: { period, seq } };
  }
}
