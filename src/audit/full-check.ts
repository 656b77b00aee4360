/**
 * `grantor audit verify --full`: the check start-up no longer makes (docs/audit.md, "What
 * start-up checks"). Replays every log period's store from its first entry, in order, with
 * bounded memory (replay.ts) and compares what it recomputes with what the stores hold:
 * every tile (the stored one must hold the recomputed hashes) and every batch record's
 * extend value. Across periods (periods.ts) it recomputes each frozen period's end (size,
 * root, TPM counter and extend value) and requires the next period's registry record and
 * its link entry to name exactly that end, and runs the extend chain on from it. With the
 * start-up check (the last batch's extend value against the TPM), that binds every period's
 * store to the anchor.
 */
import { GENESIS_EXTEND } from './anchor.port.js';
import type { AuditStore } from './audit-store.port.js';
import { isEntryShape } from './entry.js';
import { HASH_SIZE } from './merkle.js';
import type { PeriodStore } from './period-store.port.js';
import {
  isPeriodNumber,
  isPeriodRecord,
  linkProblem,
  periodOrigin,
  type PeriodEnd,
} from './periods.js';
import { ReplayProblem, replayLog, replayRetired, type Replayed } from './replay.js';
import { isRetirementRecord } from './retention.js';
import { TILE_WIDTH } from './tiles.js';

export interface FullCheckProgress {
  (entries: number, total: number): void;
}

/** What `verify --full` recomputed: the whole log, every period. */
export interface FullReport {
  /** Periods replayed (the current one included). */
  readonly periods: number;
  /**
   * Periods whose entries were retired (retention.ts): replayed from their level-0 tiles,
   * the entries themselves checked by their bundle's verifier before deletion.
   */
  readonly retired: readonly number[];
  /** Entries and batches over all periods. */
  readonly size: number;
  readonly batches: number;
  /** The current period's origin, root and the anchor state after its last batch. */
  readonly origin: string;
  readonly root: Buffer;
  readonly counter: bigint;
  readonly extend: Buffer;
}

/** One period's store replayed from `baseExtend`, its tiles and extend values compared. */
async function replayStore(
  store: AuditStore,
  baseExtend: Buffer,
  progress: (entries: number) => void,
  retired = false,
): Promise<Replayed> {
  return (retired ? replayRetired : replayLog)(
    store,
    {
      derived: async (tiles, batches, stored) => {
        for (const t of tiles) {
          const held = await store.readTile(t.level, t.index);
          const full = t.hashes.length === TILE_WIDTH * HASH_SIZE;
          const ok =
            held !== undefined &&
            (full ? held.equals(t.hashes) : held.subarray(0, t.hashes.length).equals(t.hashes));
          if (!ok) {
            throw new ReplayProblem(
              `audit tile ${t.level}/${t.index} does not hold the hashes recomputed from the entries`,
              {
                reason: 'store_tiles_mismatch',
                tile: `${t.level}/${t.index}`,
                problem: held === undefined ? 'missing' : 'differs',
              },
            );
          }
        }
        batches.forEach((b, i) => {
          const held = stored[i] as { extend?: unknown } | undefined;
          if (held?.extend !== b.extend) {
            throw new ReplayProblem(
              `audit store batch record ${b.index} does not hold the extend value recomputed from the entries`,
              { reason: 'store_batch_malformed', batch: b.index },
            );
          }
        });
      },
      progress,
    },
    baseExtend,
  );
}

/** The first period's store identity: its origin and the pinned genesis it was created at. */
async function firstMeta(store: AuditStore): Promise<{ origin: string; genesis: bigint }> {
  const meta = (await store.readMeta()) as
    { origin?: unknown; genesisCounter?: unknown } | null | undefined;
  if (meta === undefined || meta === null) {
    throw new ReplayProblem('the audit store holds no log', { reason: 'store_meta_missing' });
  }
  if (
    typeof meta.origin !== 'string' ||
    typeof meta.genesisCounter !== 'string' ||
    !/^\d{1,20}$/.test(meta.genesisCounter)
  ) {
    throw new ReplayProblem('the audit store metadata is malformed', {
      reason: 'store_meta_malformed',
    });
  }
  return { origin: meta.origin, genesis: BigInt(meta.genesisCounter) };
}

/** Period n's store must name its own origin (a store swapped between periods is not). */
async function checkMeta(store: AuditStore, origin: string, period: number): Promise<void> {
  const meta = (await store.readMeta()) as { origin?: unknown } | null | undefined;
  if (meta === undefined || meta === null) {
    throw new ReplayProblem(`log period ${period} has no store`, {
      reason: 'store_missing',
      period,
    });
  }
  if (meta.origin !== origin) {
    throw new ReplayProblem(`the store of log period ${period} is not of ${origin}`, {
      reason: 'store_origin_mismatch',
      period,
    });
  }
}

/** The size a store's last batch record names (for the progress bar's total only). */
async function lastSize(store: AuditStore): Promise<number> {
  const last = (await store.lastBatches(1))[0] as { size?: unknown } | undefined;
  return typeof last?.size === 'number' ? last.size : 0;
}

const sameEnd = (a: PeriodEnd, b: PeriodEnd): boolean =>
  a.period === b.period &&
  a.origin === b.origin &&
  a.size === b.size &&
  a.root === b.root &&
  a.counter === b.counter &&
  a.extend === b.extend;

/**
 * Every period in order, from the first: its store replayed from the previous period's
 * recomputed end, its record and link entry compared with that end.
 */
export async function verifyPeriodsFull(
  periods: PeriodStore,
  progress?: FullCheckProgress,
): Promise<FullReport> {
  const raw = await periods.readCurrent();
  if (raw !== undefined && !isPeriodNumber(raw)) {
    throw new ReplayProblem('the current log period is malformed', {
      reason: 'period_registry_malformed',
    });
  }
  const current = raw ?? 0;
  const { origin, genesis } = await firstMeta(periods.store(0));
  let total = 0;
  for (let n = 0; n <= current; n++) total += await lastSize(periods.store(n));
  let done = 0;
  let batches = 0;
  let counter = genesis;
  let extend: Buffer = Buffer.from(GENESIS_EXTEND);
  let end: PeriodEnd | undefined;
  let replayed: Replayed | undefined;
  const retiredPeriods: number[] = [];
  for (let n = 0; n <= current; n++) {
    const store = periods.store(n);
    const own = periodOrigin(origin, n);
    if (end !== undefined) {
      // The registry's record must name the end just recomputed (none replaced, none skipped).
      const record = await periods.readRecord(n);
      if (!isPeriodRecord(record, origin, n)) {
        throw new ReplayProblem(`the record of log period ${n} is missing or malformed`, {
          reason: 'period_registry_malformed',
          period: n,
        });
      }
      if (!sameEnd(record.previous, end)) {
        throw new ReplayProblem(
          `the record of log period ${n} does not name the end recomputed from period ${n - 1}`,
          { reason: 'period_link_mismatch', period: n, problem: 'record' },
        );
      }
      await checkMeta(store, own, n);
    }
    const base = done;
    // A retired period's entries are in its verified bundle: its tiles stand in for them.
    const retired = isRetirementRecord(await periods.readRetirement(n), n);
    if (retired) retiredPeriods.push(n);
    const r = await replayStore(
      store,
      extend,
      (entries) => progress?.(base + entries, total),
      retired,
    ).catch((err: unknown) => {
      // The same reasons as start-up's, the period named (its seqs start from 0).
      if (!(err instanceof ReplayProblem) || current === 0) throw err;
      throw new ReplayProblem(`log period ${n}: ${err.message}`, { ...err.details, period: n });
    });
    if (end !== undefined) {
      // Entry 0 is the link: its facts must be the recomputed end of the period before.
      let first: unknown;
      for await (const e of store.readEntries(0, 1)) first = e;
      const problem = isEntryShape(first) ? linkProblem(first, end, n) : 'missing';
      if (problem !== undefined) {
        throw new ReplayProblem(
          `the first entry of log period ${n} is not its link to the recomputed end of period ${n - 1} (${problem})`,
          { reason: 'period_link_mismatch', period: n, problem },
        );
      }
    }
    done += r.size;
    batches += r.batches;
    counter += BigInt(r.batches);
    extend = r.extend;
    replayed = r;
    end = {
      period: n,
      origin: own,
      size: r.size,
      root: r.root.toString('hex'),
      counter: counter.toString(),
      extend: r.extend.toString('hex'),
    };
  }
  if (replayed === undefined || end === undefined) {
    throw new ReplayProblem('no log period replayed', { reason: 'store_missing' });
  }
  progress?.(done, total);
  return {
    periods: current + 1,
    retired: retiredPeriods,
    size: done,
    batches,
    origin: end.origin,
    root: replayed.root,
    counter,
    extend,
  };
}
