/**
 * The owed-entry journal (audit-pending.ts) over the memory store and a log that fails on
 * demand: an entry the log refused is retried until written, exactly once, even when a
 * failed append did reach the log; a restart appends what the previous run left.
 */
import { describe, expect, it, vi } from 'vitest';
import type { AuditEntry, AuditEvent } from '../audit/index.js';
import { AuditNotFoundError } from '../audit/index.js';
import { createMetrics } from '../shared/metrics.js';
import { MemoryGrantStore } from './grant-store.port.js';
import { PendingAudits } from './audit-pending.js';

/** A log in memory: `down` refuses appends; `landThenFail` stores one and still rejects. */
function memoryLog() {
  const entries: AuditEntry[] = [];
  const state = { down: false, landThenFail: false, appends: 0 };
  const log = {
    treeSize: () => entries.length,
    entries: (from: number, limit: number): Promise<AuditEntry[]> =>
      from > entries.length
        ? Promise.reject(new AuditNotFoundError(`no entry ${from}`))
        : Promise.resolve(entries.slice(from, from + limit)),
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
    const store = new MemoryGrantStore();
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
    const store = new MemoryGrantStore();
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

  it('a restart appends, once and in order, what the previous run left in the journal', async () => {
    const store = new MemoryGrantStore();
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
