/**
 * The audit log across its periods (periods.ts): which period is current, the switch to the
 * next one, and frozen periods opened read-only. Each period is an AuditLog with its own
 * store and origin; the TPM anchor's one chain runs on across them (docs/audit.md, "Log
 * periods").
 *
 * The switch is one synced store write (the new period's record, `current`, its first batch:
 * the link entry). It is then anchored by the new period's own start-up check, as a crash
 * between a batch's store write and its extend would be (`stored_not_anchored`), so a crash
 * at any step of a switch lands in a case start-up already completes.
 */
import type { Clock } from '../shared/clock.js';
import type { DomainLogger } from '../shared/log.js';
import type { AnchorState, AuditAnchor } from './anchor.port.js';
import { extendDigest } from './anchor.port.js';
import type { AuditStore } from './audit-store.port.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import { GENESIS_PREV_HASH, buildEntry, checkEvent } from './entry.js';
import {
  AuditNotProvisionedError,
  AuditPeriodNotFoundError,
  AuditRangeError,
  AuditRollbackError,
  AuditUnavailableError,
} from './errors.js';
import type { AuditLog } from './log.js';
import { leafHash } from './merkle.js';
import type { PeriodStore } from './period-store.port.js';
import {
  isPeriodNumber,
  isPeriodRecord,
  linkProblem,
  periodOrigin,
  periodStartedEvent,
  type PeriodEnd,
  type PeriodRecord,
} from './periods.js';
import type { AuditFilter, QueryPage } from './query.js';
import {
  readRetirement,
  retiredView,
  retirePeriod,
  type RetentionConfig,
  type RetirementRecord,
} from './retention.js';
import type { BundlePolicySet } from './bundle.js';
import type {
  AuditExport,
  AuditService,
  BatchBoundary,
  ConsistencyProof,
  InclusionProof,
  LogService,
  PeriodInfo,
  SignedCheckpoint,
  VerifierInfo,
} from './service.js';
import type { Appended, AuditStats } from './log.js';
import { TiledTree } from './tiled-tree.js';
import type { TileRequest } from './tiles.js';
import { overlay } from '../shared/overlay.js';

/** One period's log and the service over it. */
export interface PeriodLog {
  readonly log: AuditLog;
  readonly service: LogService;
}

export interface PeriodicOptions {
  readonly origin: string;
  readonly periods: PeriodStore;
  readonly anchor: AuditAnchor;
  /** Builds period n's log and service over its store (index.ts). */
  readonly build: (origin: string, store: AuditStore, base: AnchorState | undefined) => PeriodLog;
  readonly clock: Clock;
  readonly logger: DomainLogger;
  /** A new period when the current one is this old (GRANTOR_AUDIT_PERIOD_HOURS); none if unset. */
  readonly periodMs?: number;
  /** Retention of frozen periods (retention.ts); without it retiring is refused. */
  readonly retention?: RetentionConfig;
}

interface Current extends PeriodLog {
  readonly period: number;
  readonly record: PeriodRecord | undefined;
}

const ZERO_STATS: AuditStats = { batches: 0, appends: 0, nvWrites: 0, nvRetries: 0 };
/** Frozen periods kept open (each holds its tree's right edge and a tile cache). */
const FROZEN_OPEN = 4;

function addStats(a: AuditStats, b: AuditStats): AuditStats {
  return {
    batches: a.batches + b.batches,
    appends: a.appends + b.appends,
    nvWrites: a.nvWrites + b.nvWrites,
    nvRetries: a.nvRetries + b.nvRetries,
  };
}

const hexToBuf = (hex: string): Buffer => Buffer.from(hex, 'hex');

function baseOf(record: PeriodRecord | undefined): AnchorState | undefined {
  return record === undefined
    ? undefined
    : { counter: BigInt(record.previous.counter), extendValue: hexToBuf(record.previous.extend) };
}

export class PeriodicAuditService implements AuditService {
  #current: Current | undefined;
  #starting: Promise<Current> | undefined;
  #refusal: AuditRollbackError | AuditNotProvisionedError | undefined;
  /** Set (synchronously) for the whole of a switch: appends wait for the next period. */
  #switching: Promise<PeriodInfo> | undefined;
  /** Appends handed to the current period's log and not yet settled. */
  readonly #pending = new Set<Promise<unknown>>();
  readonly #frozen = new Map<number, Promise<LogService>>();
  #timer: NodeJS.Timeout | undefined;
  /** Counters of the periods frozen while this process ran (stats() spans them). */
  #carried: AuditStats = ZERO_STATS;
  #closed = false;
  #retiring: Promise<unknown> = Promise.resolve();

  readonly #o: PeriodicOptions;

  constructor(o: PeriodicOptions) {
    this.#o = o;
  }

  // --- start-up -------------------------------------------------------------------------

  #refuse(message: string, details: Record<string, unknown>): AuditRollbackError {
    const err = new AuditRollbackError(message, { details });
    this.#refusal = err;
    this.#o.logger.error(
      { event: 'audit_rollback_detected', ...details },
      `audit: refusing to serve: ${message}; an operator must investigate the store and the TPM anchor`,
    );
    return err;
  }

  async #read<T>(what: () => Promise<T>): Promise<T> {
    try {
      return await what();
    } catch (err) {
      throw new AuditUnavailableError('audit store cannot be read', { cause: err });
    }
  }

  /** Period n's record, checked, or a refusal. */
  async #record(n: number): Promise<PeriodRecord> {
    const record = await this.#read(() => this.#o.periods.readRecord(n));
    if (!isPeriodRecord(record, this.#o.origin, n)) {
      throw this.#refuse(`the record of log period ${n} is missing or malformed`, {
        reason: 'period_registry_malformed',
        period: n,
      });
    }
    return record;
  }

  /** The current period as the registry names it, every record back to the first checked. */
  async #registry(): Promise<{ period: number; record: PeriodRecord | undefined }> {
    const raw = await this.#read(() => this.#o.periods.readCurrent());
    if (raw !== undefined && !isPeriodNumber(raw)) {
      throw this.#refuse('the current log period is malformed', {
        reason: 'period_registry_malformed',
      });
    }
    const period = raw ?? 0;
    // A later period's record with an earlier one named current: an old period presented as
    // the current one (its log would also be behind the TPM anchor).
    if ((await this.#read(() => this.#o.periods.readRecord(period + 1))) !== undefined) {
      throw this.#refuse(`log period ${period} is named current but period ${period + 1} exists`, {
        reason: 'period_not_current',
        period,
      });
    }
    // Each record names the period before it and an anchor state after it: none skipped.
    let later: PeriodRecord | undefined;
    for (let n = period; n >= 1; n--) {
      const r = await this.#record(n);
      if (later !== undefined && BigInt(r.previous.counter) >= BigInt(later.previous.counter)) {
        throw this.#refuse(`log periods ${n} and ${n + 1} are not in anchor order`, {
          reason: 'period_registry_malformed',
          period: n,
        });
      }
      later ??= r;
    }
    return { period, record: later };
  }

  async #startUp(): Promise<Current> {
    const { period, record } = await this.#registry();
    const origin = periodOrigin(this.#o.origin, period);
    const built = this.#o.build(origin, this.#o.periods.store(period), baseOf(record));
    await built.log.open();
    if (record !== undefined) {
      await this.#checkLink(built.service, record);
      // The period before must end exactly where the link says (none deleted or replaced).
      await this.#openFrozen(period - 1, record);
    }
    const current = { ...built, period, record };
    this.#o.logger.info(
      { event: 'audit_period_current', period, origin },
      `audit: log period ${period} is current`,
    );
    return current;
  }

  async #checkLink(service: LogService, record: PeriodRecord): Promise<void> {
    const [first] = await service.entries(0, 1);
    const problem =
      first === undefined ? 'missing' : linkProblem(first, record.previous, record.period);
    if (problem !== undefined) {
      throw this.#refuse(
        `the first entry of log period ${record.period} is not its link to period ${record.period - 1} (${problem})`,
        { reason: 'period_link_mismatch', period: record.period, problem },
      );
    }
  }

  /** The current period, its start-up check run first (once at a time). */
  #now(): Promise<Current> {
    if (this.#refusal !== undefined) return Promise.reject(this.#refusal);
    if (this.#closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    if (this.#current !== undefined) return Promise.resolve(this.#current);
    this.#starting ??= this.#startUp()
      .then((c) => {
        this.#current = c;
        return c;
      })
      .catch((err: unknown) => {
        // A refusal stands until an operator acts, as a period's own log keeps it.
        if (err instanceof AuditRollbackError || err instanceof AuditNotProvisionedError) {
          this.#refusal = err;
        }
        throw err;
      })
      .finally(() => {
        this.#starting = undefined;
      });
    return this.#starting;
  }

  /** The current period for a read: never runs the start-up check (that is ready()'s). */
  async #serving(): Promise<Current> {
    if (this.#refusal !== undefined) throw this.#refusal;
    const current =
      this.#current ?? (this.#switching === undefined ? undefined : await this.#now());
    if (current === undefined) throw new AuditUnavailableError('audit log is not ready');
    return current;
  }

  async ready(): Promise<void> {
    await this.#now();
    this.#schedule();
  }

  async provision(): Promise<boolean> {
    // Only the first period is ever provisioned; a log that has switched exists.
    if ((await this.#read(() => this.#o.periods.readCurrent())) !== undefined) return false;
    const first = this.#o.build(this.#o.origin, this.#o.periods.store(0), undefined);
    try {
      return await first.service.provision();
    } finally {
      await first.service.close();
    }
  }

  // --- frozen periods --------------------------------------------------------------------

  /**
   * Period m (< current) read-only: its end is what period m+1's record and link entry say
   * (checked against the anchored link at start-up); `next` is that record.
   */
  #openFrozen(m: number, next: PeriodRecord): Promise<LogService> {
    const known = this.#frozen.get(m);
    if (known !== undefined) return known;
    const opening = (async (): Promise<LogService> => {
      const record = m === 0 ? undefined : await this.#record(m);
      const origin = periodOrigin(this.#o.origin, m);
      const built = this.#o.build(origin, this.#o.periods.store(m), baseOf(record));
      const end = next.previous;
      try {
        await built.log.openFrozen({
          size: end.size,
          root: hexToBuf(end.root),
          counter: BigInt(end.counter),
          extendValue: hexToBuf(end.extend),
        });
      } catch (err) {
        if (err instanceof AuditRollbackError) {
          throw this.#refuse(err.message, { ...err.details, period: m });
        }
        throw err;
      }
      if (record !== undefined) await this.#checkLink(built.service, record);
      await this.#checkNotEmptied(m, end.size);
      return frozenView(built.service);
    })();
    opening.catch(() => this.#frozen.delete(m));
    this.#frozen.set(m, opening);
    if (this.#frozen.size > FROZEN_OPEN) {
      const [oldest] = this.#frozen.keys();
      if (oldest !== undefined && oldest !== m) this.#frozen.delete(oldest);
    }
    return opening;
  }

  /**
   * A frozen period's last entry is still in its store unless the period was retired
   * (retention.ts): entries that vanished without a retirement record are refused
   * (`store_entries_missing`), one read whatever the period's size.
   */
  async #checkNotEmptied(m: number, size: number): Promise<void> {
    if (size <= (m === 0 ? 0 : 1)) return;
    if ((await this.#read(() => this.#o.periods.readRetirement(m))) !== undefined) return;
    const last = await this.#read(async () => {
      for await (const v of this.#o.periods.store(m).readEntries(size - 1, 1)) return v;
      return undefined;
    });
    if (last === undefined) {
      throw this.#refuse(
        `the entries of frozen log period ${m} are gone without a retirement record`,
        { reason: 'store_entries_missing', period: m },
      );
    }
  }

  currentPeriod(): number | undefined {
    return this.#current?.period;
  }

  async inPeriod(period: number): Promise<LogService> {
    if (!isPeriodNumber(period)) throw new AuditRangeError('bad period');
    const current = await this.#serving();
    if (period === current.period) return current.service;
    if (period > current.period) {
      throw new AuditPeriodNotFoundError(`no log period ${period} (current ${current.period})`);
    }
    const frozen = await this.#openFrozen(period, await this.#record(period + 1));
    const retired = await this.#read(() => readRetirement(this.#o.periods, period));
    return retired === undefined ? frozen : retiredView(frozen, retired);
  }

  async retirePeriod(
    period: number,
    actor: string,
    policySet: (hash: string) => Promise<BundlePolicySet | undefined>,
  ): Promise<RetirementRecord> {
    const config = this.#o.retention;
    if (config === undefined) throw new AuditUnavailableError('retention is not configured');
    // One retirement at a time (each exports, verifies and deletes a whole period).
    const run = this.#retiring
      .catch(() => undefined)
      .then(() =>
        retirePeriod({
          audit: this,
          periods: this.#o.periods,
          config,
          clock: this.#o.clock,
          policySet,
          period,
          actor,
        }),
      );
    this.#retiring = run;
    const done = await run;
    this.#o.logger.info(
      { event: 'audit_period_retired', period, bundleDigest: done.bundleDigest },
      `audit: the entries of log period ${period} were retired to bundle ${done.file}`,
    );
    return done;
  }

  async periods(): Promise<PeriodInfo[]> {
    const current = await this.#serving();
    const out: PeriodInfo[] = [];
    for (let n = 0; n <= current.period; n++) {
      const record = n === 0 ? undefined : await this.#record(n);
      out.push({
        period: n,
        origin: periodOrigin(this.#o.origin, n),
        state: n === current.period ? 'current' : 'frozen',
        startedAt: record?.startedAt ?? null,
        ...(record === undefined ? {} : { previous: record.previous }),
      });
    }
    return out;
  }

  // --- the switch ------------------------------------------------------------------------

  async startPeriod(actor: string): Promise<PeriodInfo> {
    while (this.#switching !== undefined) await this.#switching.catch(() => undefined);
    const run = this.#switchPeriod(actor);
    this.#switching = run;
    try {
      return await run;
    } finally {
      if (this.#switching === run) this.#switching = undefined;
    }
  }

  async #switchPeriod(actor: string): Promise<PeriodInfo> {
    const cur = await this.#now();
    const genesis = this.#o.anchor.genesis;
    if (genesis === undefined) throw new AuditUnavailableError('audit log is not provisioned');
    // Every append already handed to this period settles in it; later ones wait (append).
    await Promise.allSettled([...this.#pending]);
    // Set inside the callback (so an object: the checker does not track it there).
    const step = { attempted: false };
    let closing: Promise<void> | undefined;
    try {
      await cur.log.whileIdle(async (head) => {
        const period = cur.period + 1;
        const startedAt = new Date(this.#o.clock.now()).toISOString();
        const previous: PeriodEnd = {
          period: cur.period,
          origin: periodOrigin(this.#o.origin, cur.period),
          size: head.size,
          root: head.root.toString('hex'),
          counter: head.counter.toString(),
          extend: head.extendValue.toString('hex'),
        };
        const record: PeriodRecord = {
          period,
          origin: periodOrigin(this.#o.origin, period),
          startedAt,
          previous,
        };
        const link = buildEntry(
          checkEvent(periodStartedEvent(record, actor)),
          0,
          startedAt,
          GENESIS_PREV_HASH,
        );
        const tree = new TiledTree(this.#o.periods.store(period));
        tree.appendLeaf(leafHash(hexToBuf(link.hash)));
        const root = tree.root();
        step.attempted = true;
        await this.#o.periods.startPeriod(
          record,
          { version: 2, origin: record.origin, genesisCounter: genesis.toString() },
          [link],
          {
            index: 0,
            size: 1,
            root: root.toString('hex'),
            extend: extendDigest(head.extendValue, root).toString('hex'),
          },
          tree.writes(),
        );
        // The frozen period never appends again (closing sets that at once).
        closing = cur.service.close();
      });
    } catch (err) {
      if (!step.attempted) throw err;
      // Whether the switch is durable is unknown: read the registry again before serving.
      closing ??= cur.service.close();
      await closing;
      this.#current = undefined;
      this.#frozen.clear();
      throw err;
    }
    await closing;
    this.#carried = addStats(this.#carried, cur.service.stats());
    this.#current = undefined;
    this.#frozen.clear();
    // The new period's start-up check anchors its first batch (stored, not anchored).
    const next = await this.#now();
    this.#o.logger.info(
      { event: 'audit_period_started', period: next.period, actor },
      `audit: log period ${next.period} started; period ${cur.period} is frozen`,
    );
    const [info] = (await this.periods()).slice(-1);
    if (info === undefined) throw new AuditUnavailableError('audit log periods cannot be read');
    return info;
  }

  /**
   * A scheduled switch when the current period is older than the configured length and
   * holds more than its link entry (an idle log does not pile up empty periods). Resolves
   * whether it switched. The timer calls it; tests call it with an injected clock.
   */
  async tick(): Promise<boolean> {
    const length = this.#o.periodMs;
    if (length === undefined || this.#closed) return false;
    const cur = await this.#now();
    const size = cur.service.treeSize() ?? 0;
    if (size <= (cur.record === undefined ? 0 : 1)) return false;
    let started = cur.record?.startedAt;
    if (started === undefined) {
      const [first] = await cur.service.entries(0, 1);
      started = first?.time;
    }
    if (started === undefined || this.#o.clock.now() - Date.parse(started) < length) return false;
    await this.startPeriod('schedule');
    return true;
  }

  #schedule(): void {
    const length = this.#o.periodMs;
    if (length === undefined || this.#timer !== undefined || this.#closed) return;
    this.#timer = setInterval(
      () => {
        this.tick().catch((err: unknown) => {
          this.#o.logger.warn(
            { event: 'audit_period_failed' },
            `audit: scheduled log period not started: ${err instanceof Error ? err.message : 'error'}`,
          );
        });
      },
      Math.min(60_000, Math.max(1000, Math.floor(length / 10))),
    );
    this.#timer.unref();
  }

  // --- the current period's service -------------------------------------------------------

  async append(event: AuditEvent): Promise<Appended> {
    for (;;) {
      if (this.#switching !== undefined) await this.#switching.catch(() => undefined);
      const cur = await this.#now();
      // Checked and handed over without yielding, so a switch cannot begin in between.
      if (this.#switching !== undefined || this.#current !== cur) continue;
      const appended = cur.service.append(event);
      this.#pending.add(appended);
      void appended.then(
        () => this.#pending.delete(appended),
        () => this.#pending.delete(appended),
      );
      return appended.then((a) => ({ ...a, period: cur.period }));
    }
  }

  async checkpoint(options?: { nonce?: Buffer }): Promise<SignedCheckpoint> {
    return (await this.#serving()).service.checkpoint(options);
  }

  async verifier(): Promise<VerifierInfo> {
    return (await this.#serving()).service.verifier();
  }

  async entries(from: number, limit: number): Promise<AuditEntry[]> {
    return (await this.#serving()).service.entries(from, limit);
  }

  async query(filter: AuditFilter, cursor: number, limit: number): Promise<QueryPage> {
    return (await this.#serving()).service.query(filter, cursor, limit);
  }

  async body(digest: string): Promise<string> {
    return (await this.#serving()).service.body(digest);
  }

  async batches(from: number, limit: number): Promise<BatchBoundary[]> {
    return (await this.#serving()).service.batches(from, limit);
  }

  async inclusionProof(seq: number, treeSize: number): Promise<InclusionProof> {
    return (await this.#serving()).service.inclusionProof(seq, treeSize);
  }

  async consistencyProof(from: number, to: number): Promise<ConsistencyProof> {
    return (await this.#serving()).service.consistencyProof(from, to);
  }

  async tlogResource(request: TileRequest): Promise<Buffer> {
    return (await this.#serving()).service.tlogResource(request);
  }

  async exportLog(): Promise<AuditExport> {
    return (await this.#serving()).service.exportLog();
  }

  stats(): AuditStats {
    return addStats(this.#carried, this.#current?.service.stats() ?? ZERO_STATS);
  }

  treeSize(): number | undefined {
    return this.#current?.service.treeSize();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.#switching?.catch(() => undefined);
    await this.#starting?.catch(() => undefined);
    await this.#current?.service.close();
  }
}

/**
 * A frozen period's service: reads and proofs as any period's; its checkpoint is its final
 * state, which the TPM no longer holds, so it cannot be NV-certified (ask the current
 * period for that), and it takes no appends.
 */
function frozenView(service: LogService): LogService {
  const refuse = (what: string): AuditRangeError =>
    new AuditRangeError(`${what}: this log period is frozen; ask the current period`);
  return overlay<LogService>(service, {
    append: () => Promise.reject(refuse('no appends')),
    checkpoint: (options?: { nonce?: Buffer }) =>
      options?.nonce === undefined
        ? service.checkpoint()
        : Promise.reject(refuse('no NV-certified checkpoint')),
    exportLog: () => Promise.reject(refuse('no legacy export')),
  });
}
