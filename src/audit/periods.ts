/**
 * Log periods (issue 17 item 3): the log starts a new tree, with its own origin, every
 * configured period and on an operator's demand. Pure pieces here: names, the period
 * record kept in the registry, and the link entry that opens every period after the first
 * with the previous period's final checkpoint and anchor state. The orchestration (the
 * switch, start-up, frozen periods) is periodic.ts; the design and its crash argument are
 * in docs/audit.md, "Log periods".
 *
 * The TPM anchor does not know about periods: its one chain of extends and its counter run
 * on across them, so period n's first batch is anchored right after period n-1's last.
 */
import { createHash } from 'node:crypto';
import { jcs } from '../shared/jcs.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import type { PeriodStartedFacts } from './facts.js';

/** The type of a period's first entry, the link to the previous period. */
export const PERIOD_STARTED = 'audit.period.started';

/** Largest period number (far beyond hourly periods for a century). */
export const MAX_PERIOD = 10_000_000;

/** The checkpoint origin of period `n`: the first keeps the configured origin unchanged. */
export function periodOrigin(origin: string, period: number): string {
  return period === 0 ? origin : `${origin}/period-${period}`;
}

/** The store (LevelDB sublevel) of period `n`: the first is the log's original `audit`. */
export function periodStoreName(period: number): string {
  return period === 0 ? 'audit' : `audit-p${period}`;
}

/** A frozen period's end: its final checkpoint (origin, size, root) and anchor state. */
export interface PeriodEnd {
  readonly period: number;
  readonly origin: string;
  readonly size: number;
  /** hex */
  readonly root: string;
  /** The TPM counter after its last batch, decimal. */
  readonly counter: string;
  /** The TPM extend value after its last batch, hex. */
  readonly extend: string;
}

/** Registry record of period n >= 1 (period 0 has none). */
export interface PeriodRecord {
  readonly period: number;
  readonly origin: string;
  /** When the switch was written (the link entry's time). */
  readonly startedAt: string;
  readonly previous: PeriodEnd;
}

const HEX32 = /^[0-9a-f]{64}$/;
const DECIMAL = /^\d{1,20}$/;

export function isPeriodNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_PERIOD;
}

function isPeriodEnd(v: unknown): v is PeriodEnd {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    isPeriodNumber(e.period) &&
    typeof e.origin === 'string' &&
    typeof e.size === 'number' &&
    Number.isSafeInteger(e.size) &&
    e.size >= 0 &&
    typeof e.root === 'string' &&
    HEX32.test(e.root) &&
    typeof e.counter === 'string' &&
    DECIMAL.test(e.counter) &&
    typeof e.extend === 'string' &&
    HEX32.test(e.extend)
  );
}

/**
 * Whether `v` is the record of period `period` of the log `origin`, linked to the period
 * before it (the registry is on the untrusted disk: every field is checked).
 */
export function isPeriodRecord(v: unknown, origin: string, period: number): v is PeriodRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    period >= 1 &&
    r.period === period &&
    r.origin === periodOrigin(origin, period) &&
    typeof r.startedAt === 'string' &&
    !Number.isNaN(Date.parse(r.startedAt)) &&
    isPeriodEnd(r.previous) &&
    r.previous.period === period - 1 &&
    r.previous.origin === periodOrigin(origin, period - 1)
  );
}

/** The link entry's facts: the previous period's end, and who started the new one. */
export function periodFacts(record: PeriodRecord, actor: string): PeriodStartedFacts {
  const p = record.previous;
  return {
    period: record.period,
    previousPeriod: p.period,
    previousOrigin: p.origin,
    previousSize: p.size,
    previousRoot: p.root,
    previousCounter: p.counter,
    previousExtend: p.extend,
    actor,
  };
}

/** The first entry of period `record.period` (seq 0). `actor`: an operator id, or `schedule`. */
export function periodStartedEvent(record: PeriodRecord, actor: string): AuditEvent {
  return {
    type: PERIOD_STARTED,
    subject: `period:${record.period}`,
    reasons: [actor === 'schedule' ? 'schedule' : 'on_demand'],
    digest: createHash('sha256').update(jcs(record.previous)).digest('hex'),
    facts: periodFacts(record, actor),
  };
}

/**
 * What is wrong with `entry` as the link entry of the period `record` describes, or
 * undefined: seq 0, the type, and facts naming exactly the record's previous period end.
 * Used at start-up and by the bundle verifier.
 */
export function linkProblem(
  entry: AuditEntry,
  previous: PeriodEnd,
  period: number,
): string | undefined {
  if (entry.seq !== 0) return 'not the first entry';
  if (entry.type !== PERIOD_STARTED) return `type ${entry.type}`;
  const f = linkFacts(entry);
  if (f === undefined) return 'no facts';
  if (f.period !== period) return 'period';
  if (f.previousPeriod !== previous.period || f.previousOrigin !== previous.origin) {
    return 'previous period';
  }
  if (f.previousSize !== previous.size || f.previousRoot !== previous.root) {
    return 'previous checkpoint';
  }
  if (f.previousCounter !== previous.counter || f.previousExtend !== previous.extend) {
    return 'previous anchor state';
  }
  return undefined;
}

/**
 * A link entry's facts, every member still to be checked by the caller (undefined: not a
 * link entry, or one without facts). The one place that reads an entry's facts as a link's.
 */
function linkFacts(entry: AuditEntry): Partial<PeriodStartedFacts> | undefined {
  if (entry.type !== PERIOD_STARTED) return undefined;
  return entry.facts as Partial<PeriodStartedFacts> | undefined;
}

/** The size of the previous period a link entry names (undefined: not a link, or no size). */
export function linkedPreviousSize(entry: AuditEntry): number | undefined {
  const size = linkFacts(entry)?.previousSize;
  return typeof size === 'number' && Number.isSafeInteger(size) ? size : undefined;
}

/** The previous period's end as a link entry's facts state it (undefined: not a link). */
export function endFromLink(entry: AuditEntry): PeriodEnd | undefined {
  const f = linkFacts(entry);
  if (f === undefined) return undefined;
  const end = {
    period: f.previousPeriod,
    origin: f.previousOrigin,
    size: f.previousSize,
    root: f.previousRoot,
    counter: f.previousCounter,
    extend: f.previousExtend,
  };
  return isPeriodEnd(end) ? end : undefined;
}
