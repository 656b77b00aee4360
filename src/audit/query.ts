/**
 * Entry queries (GET /v1/audit/entries, GET /v1/runtimes/{id}/timeline): filters by type,
 * subject, decision and time range, paged by a seq cursor. Secondary index terms are
 * written by the store in the same synced batch as the entries they name
 * (audit-store.level.ts), so after any crash the index holds exactly the stored entries.
 * The time index (`timeKeys`) keeps the entries at which the log's time first rises past
 * every earlier time, and the entries stamped earlier than one before them (the clock
 * stepped back): from those two, `seqRange` bounds the seqs a time range can match without
 * assuming that time grows with seq.
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
  /** The seq of the first `rise` time key at or after `time`, if any (`timeKeys`). */
  firstTimeRise(time: string): Promise<number | undefined>;
  /** Seqs of the `back` time keys with times in [since, until), at most `limit`. */
  timeStepBacks(since: string | undefined, until: string, limit: number): AsyncIterable<number>;
}

/**
 * One time index key: `rise` at an entry whose time is later than every earlier entry's
 * (the running maximum, so rises are ordered alike by time and by seq), `back` at an entry
 * whose time is earlier than the running maximum (a clock stepped back).
 */
export interface TimeKey {
  readonly kind: 'rise' | 'back';
  readonly time: string;
  readonly seq: number;
}

/**
 * The time keys of entries appended after a log whose latest time so far is `top`
 * (undefined for an empty log), and the new `top`. Entries at the running maximum make no
 * key: the rise before them bounds them.
 */
export function timeKeys(
  entries: readonly Pick<AuditEntry, 'seq' | 'time'>[],
  top: string | undefined,
): { keys: TimeKey[]; top: string | undefined } {
  const keys: TimeKey[] = [];
  let max = top;
  for (const e of entries) {
    if (max === undefined || e.time > max) {
      keys.push({ kind: 'rise', time: e.time, seq: e.seq });
      max = e.time;
    } else if (e.time < max) keys.push({ kind: 'back', time: e.time, seq: e.seq });
  }
  return { keys, top: max };
}

/** Most step-back keys one query reads to bound its range; past it the range runs to the end. */
const MAX_STEP_BACKS = 10_000;

/**
 * The seqs [from, to) that can hold an entry with a time in [since, until). Before the
 * first rise at or after `since` every time is below `since` (the running maximum is). From
 * the first rise at or after `until` on, an entry below `until` is a step-back: the range
 * ends after the last step-back inside the time range.
 */
async function seqRange(
  source: QuerySource,
  f: AuditFilter,
  size: number,
): Promise<{ from: number; to: number }> {
  let from = 0;
  let to = size;
  if (f.since !== undefined) from = Math.min(size, (await source.firstTimeRise(f.since)) ?? size);
  if (f.until !== undefined) {
    const rise = await source.firstTimeRise(f.until);
    if (rise !== undefined) {
      let end = rise;
      let seen = 0;
      for await (const seq of source.timeStepBacks(f.since, f.until, MAX_STEP_BACKS + 1)) {
        seen += 1;
        end = Math.max(end, seq + 1);
      }
      if (seen <= MAX_STEP_BACKS) to = Math.min(size, end);
    }
  }
  return { from, to };
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
  // Entries in flight (stored, not yet anchored) are not answered until anchored.
  const range = await seqRange(source, filter, source.size());
  const end = range.to;
  const out: AuditEntry[] = [];
  let seq = Math.max(cursor, range.from);
  let scanned = 0;
  const term = termOf(filter);
  const indexedFrom = term === undefined ? end : Math.min(end, await source.indexedFrom());
  // Entries before the index began (an older store), and queries without a term: a scan.
  while (
    seq < end &&
    out.length < limit &&
    scanned < maxScan &&
    (term === undefined || seq < indexedFrom)
  ) {
    const stop = term === undefined ? end : indexedFrom;
    const page = await source.entries(seq, Math.min(1000, maxScan - scanned, stop - seq));
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
      if (candidate >= end) break;
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
  return { entries: out, next: seq < end ? seq : null };
}
