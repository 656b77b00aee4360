/**
 * Entry queries (GET /v1/audit/entries, GET /v1/runtimes/{id}/timeline): filters by type,
 * subject, decision and time range, paged by a seq cursor. Secondary index terms are
 * written by the store in the same synced batch as the entries they name
 * (audit-store.level.ts), so after any crash the index holds exactly the stored entries.
 * The index only says where to look: every entry returned is read from the log (checked
 * against its anchored leaf) and matched against the whole filter again, so an edited
 * index can hide an entry from a query but never put a wrong one in its answer (the export
 * and the proofs are the auditor's completeness check).
 */
import type { AuditEntry } from './entry.js';
import { SUBJECT_FACTS, factOf } from './facts.js';

export interface AuditFilter {
  readonly type?: string;
  /** The entry's subject, or a fact naming who or what it is about (facts.SUBJECT_FACTS). */
  readonly subject?: string;
  readonly decision?: string;
  /** RFC 3339 (normalised to `toISOString`), inclusive. */
  readonly since?: string;
  /** RFC 3339 (normalised), exclusive. */
  readonly until?: string;
}

export interface QueryPage {
  readonly entries: AuditEntry[];
  /** The cursor of the next page (a seq), or null when the range is exhausted. */
  readonly next: number | null;
}

/** What a query reads: the anchored log and the store's index. */
export interface QuerySource {
  /** Anchored entries. */
  size(): number;
  /** Anchored entries from `from`, checked against their leaves. */
  entries(from: number, limit: number): Promise<AuditEntry[]>;
  /** Seqs indexed under `term`, ascending from `from`. */
  scanIndex(term: string, from: number, limit: number): AsyncIterable<number>;
  /** The first seq the index covers (entries before it were written before indexing). */
  indexedFrom(): Promise<number>;
}

/** Every subject an entry is about: its `subject` and its subject facts. */
export function subjectsOf(entry: Pick<AuditEntry, 'subject' | 'facts'>): string[] {
  const out = new Set([entry.subject]);
  for (const key of SUBJECT_FACTS) {
    const value = factOf(entry.facts, key);
    if (typeof value === 'string') out.add(value);
  }
  return [...out];
}

/** The index terms of one entry (`type:`, `subject:`, `decision:`). */
export function indexTerms(entry: AuditEntry): string[] {
  return [
    `type:${entry.type}`,
    ...subjectsOf(entry).map((s) => `subject:${s}`),
    ...(entry.decision === undefined ? [] : [`decision:${entry.decision}`]),
  ];
}

/** The whole filter, on one entry (the reference the property test compares with). */
export function matches(entry: AuditEntry, f: AuditFilter): boolean {
  if (f.type !== undefined && entry.type !== f.type) return false;
  if (f.decision !== undefined && entry.decision !== f.decision) return false;
  if (f.subject !== undefined && !subjectsOf(entry).includes(f.subject)) return false;
  if (f.since !== undefined && entry.time < f.since) return false;
  if (f.until !== undefined && entry.time >= f.until) return false;
  return true;
}

/** The most selective index term the filter names, if any. */
function termOf(f: AuditFilter): string | undefined {
  if (f.subject !== undefined) return `subject:${f.subject}`;
  if (f.type !== undefined) return `type:${f.type}`;
  if (f.decision !== undefined) return `decision:${f.decision}`;
  return undefined;
}

/**
 * One page: matching entries with seq >= `cursor`, at most `limit`, examining at most
 * `maxScan` candidates (so a page costs a bounded amount of work however rare the matches;
 * `next` then continues the scan).
 */
export async function runQuery(
  source: QuerySource,
  filter: AuditFilter,
  cursor: number,
  limit: number,
  maxScan: number,
): Promise<QueryPage> {
  const size = source.size();
  const out: AuditEntry[] = [];
  let seq = cursor;
  let scanned = 0;
  const term = termOf(filter);
  const indexedFrom = term === undefined ? size : Math.min(size, await source.indexedFrom());
  // Entries before the index began (an older store), and queries without a term: a scan.
  while (
    seq < size &&
    out.length < limit &&
    scanned < maxScan &&
    (term === undefined || seq < indexedFrom)
  ) {
    const end = term === undefined ? size : indexedFrom;
    const page = await source.entries(seq, Math.min(1000, maxScan - scanned, end - seq));
    for (const entry of page) {
      scanned += 1;
      seq = entry.seq + 1;
      if (matches(entry, filter)) out.push(entry);
      if (out.length === limit) break;
    }
  }
  if (term !== undefined && seq >= indexedFrom) {
    let exhausted = true;
    for await (const candidate of source.scanIndex(term, seq, maxScan - scanned + 1)) {
      // In-flight (stored, not yet anchored) entries are not answered until anchored.
      if (candidate >= size) break;
      if (scanned >= maxScan || out.length >= limit) {
        exhausted = false;
        seq = candidate;
        break;
      }
      scanned += 1;
      const [entry] = await source.entries(candidate, 1);
      seq = candidate + 1;
      if (entry !== undefined && matches(entry, filter)) out.push(entry);
    }
    return { entries: out, next: exhausted ? null : seq };
  }
  return { entries: out, next: seq < size ? seq : null };
}
