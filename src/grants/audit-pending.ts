/**
 * Audit entries owed for changes already made (issue 18): a revocation must never wait for
 * the log. A revocation is written first, and in that same synced write a journal record of
 * the entry it owes (grant-store.port.ts `PendingAudit`); the entry is appended next and the
 * record removed. If the append fails, or the process dies in between, the record stays:
 * it is appended again by a retry with bounded backoff while the appliance runs (logged
 * `audit_entry_owed`, metrics `grantor_grants_audit_owed` and
 * `grantor_grants_audit_retries_total`), and at the next start.
 *
 * Once, not twice: an append that failed may still have reached the log (stored, then the
 * anchor failed), and a process may die between an append and the record's removal. Before
 * every retry the log is read from the position the record names (the log period and its
 * size when the change was written) to the end of that period and through every later one,
 * a page at a time and to the end (no cap: an entry past a cap would be written twice), for
 * an entry with the same type, subject and digest; one found settles the record. A period
 * switch between the journal and the append, or between the append and the removal, moves
 * the entry to another period's seq space, which is why the period is journaled too.
 */
import {
  AuditNotFoundError,
  AuditUnavailableError,
  type AuditEvent,
  type LogService,
} from '../audit/index.js';
import { GrantorError } from '../shared/errors.js';
import { silentLogger, type DomainLogger } from '../shared/log.js';
import type { GrantorMetrics } from '../shared/metrics.js';
import type { GrantStore, PendingAudit } from './grant-store.port.js';

/**
 * What the retrier reads of the audit port (AuditService has them all): the current period
 * and its size, and any period's entries. Without them a retry cannot dedupe.
 */
export interface PendingAuditLog {
  readonly treeSize?: () => number | undefined;
  readonly currentPeriod?: () => number | undefined;
  readonly inPeriod?: (period: number) => Promise<Pick<LogService, 'entries'>>;
}

export interface PendingAuditSettings {
  /** First retry delay, ms (default 1000); doubled after each failed pass. */
  readonly minDelayMs?: number;
  /** Longest retry delay, ms (default 60 000). */
  readonly maxDelayMs?: number;
  /** Entries read per page while searching the log for an earlier append (default 1000). */
  readonly scanPageSize?: number;
}

export interface PendingAuditDeps {
  readonly store: Pick<GrantStore, 'update' | 'pendingAudits'>;
  readonly log: PendingAuditLog;
  /** The pipeline's append (with its deadline). */
  readonly append: (event: AuditEvent) => Promise<{ seq: number }>;
  readonly logger?: DomainLogger | undefined;
  readonly metrics?: Pick<GrantorMetrics, 'grantsAuditOwed' | 'grantsAuditRetries'> | undefined;
}

const STARTUP_BATCH = 1000;

const codeOf = (e: unknown): string => (e instanceof GrantorError ? e.code : 'internal_error');

export class PendingAudits {
  readonly #deps: PendingAuditDeps;
  readonly #logger: DomainLogger;
  readonly #minDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #scanPageSize: number;
  /** The last log position seen: a lower bound of every later append (the log only grows). */
  #seen: { readonly period: number; readonly fromSeq: number } | undefined;
  /** Owed entries waiting for a retry, by id (sorted when retried: oldest first). */
  readonly #owed = new Map<string, PendingAudit>();
  #delayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: PendingAuditDeps, settings: PendingAuditSettings = {}) {
    this.#deps = deps;
    this.#logger = deps.logger ?? silentLogger;
    this.#minDelayMs = settings.minDelayMs ?? 1000;
    this.#maxDelayMs = Math.max(this.#minDelayMs, settings.maxDelayMs ?? 60_000);
    this.#scanPageSize = settings.scanPageSize ?? 1000;
    this.#delayMs = this.#minDelayMs;
  }

  /** Entries owed now (written changes whose entry is not in the log yet). */
  get owed(): number {
    return this.#owed.size;
  }

  /** The journal record for `event`, to be written in the same write as its change. */
  journal(event: AuditEvent, nowMs: number): PendingAudit {
    const ms = String(Math.max(0, Math.floor(nowMs))).padStart(16, '0');
    const id = `${ms}-${event.digest}`;
    const at = this.#position();
    return at === undefined ? { id, event, fromSeq: null } : { id, event, ...at };
  }

  /**
   * Where the log is now (both read synchronously, so of one period), or, while it is not
   * serving (starting, or in a switch), the last position seen: still a lower bound.
   */
  #position(): { readonly period: number; readonly fromSeq: number } | undefined {
    const { log } = this.#deps;
    const period = log.currentPeriod?.();
    const fromSeq = log.treeSize?.();
    if (period !== undefined && fromSeq !== undefined) this.#seen = { period, fromSeq };
    return this.#seen;
  }

  /**
   * Append the entry of a change just written with `record`, and remove the record. On
   * failure the entry is owed (retried) and this resolves with null: the change stands.
   */
  async settle(record: PendingAudit): Promise<number | null> {
    let seq: number;
    try {
      seq = (await this.#deps.append(record.event)).seq;
    } catch (e) {
      this.#owe(record, e);
      return null;
    }
    await this.#done(record);
    return seq;
  }

  /**
   * At start: every record a previous process left, appended (once) from now on; retries
   * run (again, after `stop`) from here.
   */
  async resume(): Promise<number> {
    this.#stopped = false;
    const left = await this.#deps.store.pendingAudits(STARTUP_BATCH);
    for (const r of left) this.#owed.set(r.id, r);
    this.#gauge();
    if (left.length > 0) {
      this.#logger.warn(
        { event: 'audit_entry_owed', owed: left.length },
        `${left.length} audit entr(y/ies) owed for revocations a previous run applied; appending them`,
      );
      await this.#retry();
    }
    return left.length;
  }

  /** Stops retrying (the process is closing); owed records stay for the next start. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves when the retry pass under way (if any) has ended. */
  async idle(): Promise<void> {
    await this.#pass;
  }

  #owe(record: PendingAudit, cause: unknown): void {
    this.#owed.set(record.id, record);
    this.#gauge();
    this.#logger.warn(
      { event: 'audit_entry_owed', type: record.event.type, code: codeOf(cause) },
      'the audit log did not take the entry of an applied change; it is kept and retried',
    );
    this.#schedule();
  }

  async #done(record: PendingAudit): Promise<void> {
    this.#owed.delete(record.id);
    this.#gauge();
    try {
      await this.#deps.store.update([], [], { done: [record.id] });
    } catch (e) {
      // The entry is in the log; a record left behind is found there at the next start.
      this.#logger.warn(
        { event: 'audit_journal_remove_failed', code: codeOf(e) },
        'could not remove the journal record of an appended audit entry',
      );
    }
  }

  #gauge(): void {
    this.#deps.metrics?.grantsAuditOwed.set(this.#owed.size);
  }

  #schedule(): void {
    if (this.#stopped || this.#timer !== undefined || this.#pass !== undefined) return;
    if (this.#owed.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#retry();
    }, this.#delayMs);
    this.#timer.unref();
  }

  /** One pass over the owed records, oldest first; stops at the first failure. */
  #retry(): Promise<void> {
    this.#pass ??= this.#retryAll().finally(() => {
      this.#pass = undefined;
      this.#schedule();
    });
    return this.#pass;
  }

  async #retryAll(): Promise<void> {
    const ids = [...this.#owed.keys()].sort();
    for (const id of ids) {
      const record = this.#owed.get(id);
      if (record === undefined || this.#stopped) continue;
      try {
        await this.#appendOnce(record);
        this.#deps.metrics?.grantsAuditRetries.inc({ outcome: 'written' });
      } catch (e) {
        this.#deps.metrics?.grantsAuditRetries.inc({ outcome: 'failed' });
        this.#delayMs = Math.min(this.#maxDelayMs, this.#delayMs * 2);
        this.#logger.warn(
          {
            event: 'audit_entry_owed',
            owed: this.#owed.size,
            code: codeOf(e),
            retryInMs: this.#delayMs,
          },
          'the audit log still does not take the owed entries; retrying',
        );
        return;
      }
    }
    this.#delayMs = this.#minDelayMs;
  }

  /** Append `record`'s entry unless an earlier attempt already put it in the log. */
  async #appendOnce(record: PendingAudit): Promise<void> {
    let current = record;
    if (current.fromSeq === null) {
      // The log was not serving when the change was written: nothing reached it until now.
      const at = this.#position();
      if (at !== undefined) {
        current = { ...record, ...at };
        // Kept first: an append from here on is found from this seq after a crash.
        await this.#deps.store.update([], [], { put: [current] });
        this.#owed.set(current.id, current);
      }
    } else if ((await this.#findInLog(current)) !== undefined) {
      await this.#done(current);
      return;
    }
    await this.#deps.append(current.event);
    await this.#done(current);
  }

  /**
   * Where an entry holding `record`'s event already is, if the log can say: from the
   * journaled position to the end of its period, then every later period from its start.
   * A record journaled before periods were recorded names none: its seq may count in any
   * period up to the current one, so it is read as period 0, the earliest (a longer search,
   * never a missed entry).
   */
  async #findInLog(
    record: PendingAudit,
  ): Promise<{ readonly period: number; readonly seq: number } | undefined> {
    const { log } = this.#deps;
    if (log.inPeriod === undefined || log.currentPeriod === undefined) return undefined;
    if (record.fromSeq === null) return undefined;
    let period = record.period ?? 0;
    let from = record.fromSeq;
    for (;;) {
      const seq = await this.#findInPeriod(await log.inPeriod(period), from, record.event);
      if (seq !== undefined) return { period, seq };
      // Read after the period's end: a switch meanwhile adds a period to search.
      const current = log.currentPeriod();
      if (current === undefined) throw new AuditUnavailableError('audit log is not serving');
      if (period >= current) return undefined;
      period += 1;
      from = 0;
    }
  }

  /** One period from `from` to its end, a page at a time (memory: one page). */
  async #findInPeriod(
    service: Pick<LogService, 'entries'>,
    from: number,
    { type, subject, digest }: AuditEvent,
  ): Promise<number | undefined> {
    for (let next = from; ;) {
      let page;
      try {
        page = await service.entries(next, this.#scanPageSize);
      } catch (e) {
        // Past the period's last entry.
        if (e instanceof AuditNotFoundError) return undefined;
        throw e;
      }
      const last = page.at(-1);
      if (last === undefined) return undefined;
      const hit = page.find((e) => e.type === type && e.subject === subject && e.digest === digest);
      if (hit !== undefined) return hit.seq;
      next = last.seq + 1;
    }
  }
}
