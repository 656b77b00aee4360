/**
 * The log periods in LevelDB: `db.sublevel('audit-periods')` holds `current` (`{"period":n}`)
 * and `p!<n, 16 digits>` (period records, periods.ts), `r!<n, 16 digits>` (retirement
 * records, retention.ts); period n's entries, batches and tiles
 * live in `db.sublevel(periodStoreName(n))` with the audit store's own layout
 * (audit-store.level.ts). A period's start is one synced batch across both sublevels.
 */
import type { Database } from '../shared/db.level.js';
import type { AuditStore, StoreMeta, StoredBatch } from './audit-store.port.js';
import { LevelAuditStore, stringSublevel } from './audit-store.level.js';
import type { AuditEntry } from './entry.js';
import type { PeriodStore } from './period-store.port.js';
import { periodStoreName, type PeriodRecord } from './periods.js';
import type { TileData } from './tiles.js';

const CURRENT = 'current';
const recordKey = (period: number): string => `p!${period.toString().padStart(16, '0')}`;
/** A retired period's record (retention.ts). */
const retiredKey = (period: number): string => `r!${period.toString().padStart(16, '0')}`;

function parse(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { corrupt: true };
  }
}

export class LevelPeriodStore implements PeriodStore {
  readonly #sub;
  readonly #stores = new Map<number, { level: LevelAuditStore; store: AuditStore }>();

  readonly #db: Database;
  readonly #decorate: (store: AuditStore) => AuditStore;

  constructor(
    db: Database,
    /** Wraps each period's store (e.g. to measure it); the switch writes around it. */
    decorate: (store: AuditStore) => AuditStore = (s) => s,
  ) {
    this.#db = db;
    this.#decorate = decorate;
    this.#sub = stringSublevel(db, 'audit-periods');
  }

  async readCurrent(): Promise<unknown> {
    const value = parse(await this.#sub.get(CURRENT));
    return value === undefined ? undefined : (value as { period?: unknown }).period;
  }

  async readRecord(period: number): Promise<unknown> {
    return parse(await this.#sub.get(recordKey(period)));
  }

  async readRetirement(period: number): Promise<unknown> {
    return parse(await this.#sub.get(retiredKey(period)));
  }

  async writeRetirement(period: number, record: object): Promise<void> {
    await this.#db.batch(
      [
        {
          type: 'put',
          key: retiredKey(period),
          value: JSON.stringify(record),
          sublevel: this.#sub,
        },
      ],
      { sync: true },
    );
  }

  #opened(period: number): { level: LevelAuditStore; store: AuditStore } {
    let s = this.#stores.get(period);
    if (s === undefined) {
      const level = new LevelAuditStore(this.#db, periodStoreName(period));
      s = { level, store: this.#decorate(level) };
      this.#stores.set(period, s);
    }
    return s;
  }

  store(period: number): AuditStore {
    return this.#opened(period).store;
  }

  async startPeriod(
    record: PeriodRecord,
    meta: StoreMeta,
    entries: readonly AuditEntry[],
    batch: StoredBatch,
    tiles: readonly TileData[],
  ): Promise<void> {
    const { ops } = await this.#opened(record.period).level.batchOps(
      { entries, batch, bodies: [], tiles },
      meta,
    );
    await this.#db.batch(
      [
        ...ops,
        {
          type: 'put',
          key: recordKey(record.period),
          value: JSON.stringify(record),
          sublevel: this.#sub,
        },
        {
          type: 'put',
          key: CURRENT,
          value: JSON.stringify({ period: record.period }),
          sublevel: this.#sub,
        },
      ],
      { sync: true },
    );
  }
}
