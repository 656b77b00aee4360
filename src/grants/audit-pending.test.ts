/**
 * The owed-entry journal (audit-pending.ts) over the memory store and a log that fails on
 * demand: an entry the log refused is retried until written, exactly once, even when a
 * failed append did reach the log; a restart appends what the previous run left. Across
 * log periods, over the real periodic log (LevelDB, the in-memory anchor): an entry whose
 * period was switched between its journal, its append and its record's removal is found.
 */
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryAnchor } from '../audit/anchor.memory.js';
import type { AuditEntry, AuditEvent, AuditService } from '../audit/index.js';
import { AuditNotFoundError, createAudit } from '../audit/index.js';
import { testSigner } from '../audit/testing.js';
import { openDatabase, type Database } from '../shared/db.level.js';
import { createMetrics } from '../shared/metrics.js';
import { tempDirs } from '../shared/testing/temp-dirs.js';
import type { RevocationEvent } from './revocations.port.js';
import { createFakeGrantStore, MemoryGrantStore } from './grant-store.memory.js';
import type { GrantRecord, PendingAuditChange } from './grant-store.port.js';
import { PendingAudits } from './audit-pending.js';

/** A log in memory: `down` refuses appends; `landThenFail` stores one and still rejects. */
function memoryLog() {
  const entries: AuditEntry[] = [];
  const state = { down: false, landThenFail: false, appends: 0 };
  const period = {
    entries: (from: number, limit: number): Promise<AuditEntry[]> =>
      from >= entries.length
        ? Promise.reject(new AuditNotFoundError(`no entry ${from}`))
        : Promise.resolve(entries.slice(from, from + limit)),
  };
  const log = {
    treeSize: () => entries.length,
    currentPeriod: () => 0,
    inPeriod: () => Promise.resolve(period),
  };
  const append = (event: AuditEvent): Promise<{ seq: number }> => {
    state.appends += 1;
    if (state.down) return Promise.reject(new Error('store write failed (test)'));
    const seq = entries.length;
    entries.push({ ...event, seq, time: 't', prevHash: '' } as AuditEntry);
    if (state.landThenFail) {
      state.landThenFail = false;
      return Promise.reject(new Error('anchor failed after the store (test)'));
    }
    return Promise.resolve({ seq });
  };
  return { entries, state, log, append };
}

const event = (n: number): AuditEvent => ({
  type: 'grant.revoke',
  subject: `gr_${n}`,
  decision: 'revoked',
  digest: String(n).padStart(64, '0'),
});

describe('PendingAudits', () => {
  it('an entry the log refused is owed, retried, and written once; its journal record goes', async () => {
    const store = createFakeGrantStore();
    const { entries, state, log, append } = memoryLog();
    const metrics = createMetrics({ defaultMetrics: false });
    const pa = new PendingAudits(
      { store, log, append, metrics },
      { minDelayMs: 1, maxDelayMs: 20 },
    );
    state.down = true;
    const record = pa.journal(event(1), 1000);
    await store.update([], [], { put: [record] });
    expect(await pa.settle(record)).toBeNull();
    expect(pa.owed).toBe(1);
    expect((await metrics.grantsAuditOwed.get()).values[0]?.value).toBe(1);
    const failed = async () =>
      (await metrics.grantsAuditRetries.get()).values.find((v) => v.labels.outcome === 'failed')
        ?.value ?? 0;
    // Retried while the log still refuses: counted, kept.
    await vi.waitFor(async () => {
      expect(await failed()).toBeGreaterThan(0);
    });
    expect(pa.owed).toBe(1);
    state.down = false;
    await vi.waitFor(() => {
      expect(pa.owed).toBe(0);
    });
    await pa.idle();
    expect(entries.map((e) => e.subject)).toEqual(['gr_1']);
    expect(await store.pendingAudits(10)).toEqual([]);
    const retries = await metrics.grantsAuditRetries.get();
    expect(retries.values.find((v) => v.labels.outcome === 'written')?.value).toBe(1);
    pa.stop();
  });

  it('a failed append that did reach the log is not appended again', async () => {
    const store = createFakeGrantStore();
    const { entries, state, log, append } = memoryLog();
    const pa = new PendingAudits({ store, log, append }, { minDelayMs: 1, maxDelayMs: 20 });
    await pa.settle(pa.journal(event(0), 1));
    state.landThenFail = true;
    const record = pa.journal(event(2), 2000);
    await store.update([], [], { put: [record] });
    expect(await pa.settle(record)).toBeNull();
    await vi.waitFor(() => {
      expect(pa.owed).toBe(0);
    });
    expect(entries.map((e) => e.subject)).toEqual(['gr_0', 'gr_2']);
    expect(state.appends).toBe(2);
    pa.stop();
  });

  it('the search reads to the end of the log a page at a time: an entry far past its record is found', async () => {
    const store = createFakeGrantStore();
    const { entries, state, log, append } = memoryLog();
    const limits: number[] = [];
    const period = await log.inPeriod();
    const paged = {
      ...log,
      inPeriod: () =>
        Promise.resolve({
          entries: (from: number, limit: number) => {
            limits.push(limit);
            return period.entries(from, limit);
          },
        }),
    };
    const pa = new PendingAudits(
      { store, log: paged, append },
      { minDelayMs: 1, maxDelayMs: 20, scanPageSize: 2 },
    );
    const record = pa.journal(event(5), 5000);
    await store.update([], [], { put: [record] });
    // 250 entries of other changes land first: 125 pages of 2 before the record's own.
    for (let i = 0; i < 250; i++) await append({ ...event(1000 + i), subject: `other_${i}` });
    state.landThenFail = true;
    expect(await pa.settle(record)).toBeNull();
    await vi.waitFor(() => {
      expect(pa.owed).toBe(0);
    });
    expect(entries.filter((e) => e.subject === 'gr_5')).toHaveLength(1);
    expect(Math.max(...limits)).toBe(2);
    pa.stop();
  });

  it('a restart appends, once and in order, what the previous run left in the journal', async () => {
    const store = createFakeGrantStore();
    const { entries, state, log, append } = memoryLog();
    const before = new PendingAudits({ store, log, append }, { minDelayMs: 60_000 });
    state.down = true;
    for (const n of [3, 4]) {
      const r = before.journal(event(n), 3000 + n);
      await store.update([], [], { put: [r] });
      await before.settle(r);
    }
    // Killed here: the process is gone, its journal records stay.
    before.stop();
    state.down = false;
    const after = new PendingAudits({ store, log, append }, { minDelayMs: 60_000 });
    expect(await after.resume()).toBe(2);
    expect(entries.map((e) => e.subject)).toEqual(['gr_3', 'gr_4']);
    expect(await store.pendingAudits(10)).toEqual([]);
    // Nothing left to do at the next start.
    expect(await new PendingAudits({ store, log, append }).resume()).toBe(0);
    after.stop();
  });
});

const tmp = tempDirs('grantor-owed-periods-');
const opened: { db: Database; audit: AuditService }[] = [];
afterEach(async () => {
  for (const { db, audit } of opened.splice(0)) {
    await audit.close();
    await db.close();
  }
});
afterAll(() => tmp.removeAll());

/** The appliance's periodic audit log over LevelDB, with `fillers` entries in period 0. */
async function periodicLog(fillers: number): Promise<AuditService> {
  const db = await openDatabase(await tmp.make());
  const origin = 'grantor.test/owed';
  const audit = createAudit(
    { origin, minAnchorIntervalMs: 0 },
    { db, anchor: new MemoryAnchor(), signer: testSigner(origin) },
  );
  opened.push({ db, audit });
  await audit.provision();
  await audit.ready();
  for (let i = 0; i < fillers; i++) await audit.append({ ...event(100 + i), subject: `f_${i}` });
  return audit;
}

/** How many entries of every period hold `subject`. */
async function copies(audit: AuditService, subject: string): Promise<number> {
  let n = 0;
  for (const { period } of await audit.periods()) {
    const log = await audit.inPeriod(period);
    for (let from = 0; ;) {
      const page = await log.entries(from, 100).catch((e: unknown) => {
        if (e instanceof AuditNotFoundError) return [];
        throw e;
      });
      if (page.length === 0) break;
      n += page.filter((e) => e.subject === subject).length;
      from += page.length;
    }
  }
  return n;
}

/** A grant store that fails to remove journal records while `dying` (killed after an append). */
class DyingStore extends MemoryGrantStore {
  dying = true;
  override update(
    records: readonly GrantRecord[],
    revocations?: readonly RevocationEvent[],
    pending?: PendingAuditChange,
  ): Promise<void> {
    if (this.dying && pending?.done !== undefined) {
      return Promise.reject(new Error('killed before the record was removed (test)'));
    }
    return super.update(records, revocations, pending);
  }
}

/** A later run (the store no longer dying) settles the record, leaving one copy in the log. */
async function expectSettledOnce(
  audit: AuditService,
  store: MemoryGrantStore,
  subject: string,
): Promise<void> {
  if (store instanceof DyingStore) store.dying = false;
  const after = new PendingAudits({ store, log: audit, append: (e) => audit.append(e) });
  expect(await after.resume()).toBe(1);
  expect(await copies(audit, subject)).toBe(1);
  expect(await store.pendingAudits(10)).toEqual([]);
  after.stop();
}

describe('PendingAudits across log periods', () => {
  // Before the fix each of these wrote the entry twice: the retry read the seq the record
  // names in the period current at the retry, past its end, and found nothing.
  it('appended just before a switch, its record left: the retry after the switch finds it', async () => {
    const audit = await periodicLog(5);
    const store = new DyingStore();
    const before = new PendingAudits({ store, log: audit, append: (e) => audit.append(e) });
    const record = before.journal(event(1), 1000);
    expect(record).toMatchObject({ period: 0, fromSeq: 5 });
    await store.update([], [], { put: [record] });
    expect(await before.settle(record)).toBe(5);
    expect(await store.pendingAudits(10)).toHaveLength(1);
    await audit.startPeriod('op');
    await expectSettledOnce(audit, store, 'gr_1');
  });

  it('journaled before a switch and appended after it, its record left: found in the later period', async () => {
    const audit = await periodicLog(5);
    const store = new DyingStore();
    const before = new PendingAudits({ store, log: audit, append: (e) => audit.append(e) });
    const record = before.journal(event(2), 2000);
    await store.update([], [], { put: [record] });
    await audit.startPeriod('op');
    const appended = await audit.append(record.event);
    expect(appended.period).toBe(1);
    await expectSettledOnce(audit, store, 'gr_2');
  });

  it('a record journaled without its period is searched from period 0 through every later one', async () => {
    const audit = await periodicLog(5);
    const store = createFakeGrantStore();
    // As a previous version journaled it: period 0, size 3, no period named.
    const legacy = { id: '0000000000003000-legacy', event: event(3), fromSeq: 3 };
    await store.update([], [], { put: [legacy] });
    await audit.append(legacy.event);
    await audit.startPeriod('op');
    await audit.startPeriod('op');
    await expectSettledOnce(audit, store, 'gr_3');
  });
});
