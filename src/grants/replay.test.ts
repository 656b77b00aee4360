import { describe, expect, it } from 'vitest';
import { createFakeGrantStore, type MemoryGrantStore } from './grant-store.memory.js';
import { ReplayGuard } from './replay.js';

const SKEW = 60_000;
const T0 = 1_800_000_000_000;

function guard(store: MemoryGrantStore, maxEntries = 100): ReplayGuard {
  return new ReplayGuard(store, maxEntries, { skewMs: SKEW, graceMs: SKEW });
}

describe('ReplayGuard: memory in place of the store', () => {
  it('loads the live ids on the first request, then answers from memory as the store would', async () => {
    const store = createFakeGrantStore();
    await store.putRequest('rt', 'live', T0 + SKEW);
    await store.putRequest('rt', 'in-grace', T0 - SKEW / 2);
    await store.putRequest('rt', 'forgotten', T0 - 2 * SKEW);
    const g = guard(store);
    expect(g.usedInMemory('rt', 'live', T0)).toBeUndefined();
    const loading = g.ready(T0);
    expect(g.ready(T0)).toBe(loading);
    await loading;
    expect(g.ready(T0)).toBeUndefined();
    expect(g.usedInMemory('rt', 'live', T0)).toBe(true);
    expect(g.seen('rt', 'live', T0)).toBe(true);
    // Past its expiry but inside the grace: the store would still have it.
    expect(g.usedInMemory('rt', 'in-grace', T0)).toBe(true);
    expect(g.seen('rt', 'in-grace', T0)).toBe(false);
    expect(g.usedInMemory('rt', 'forgotten', T0)).toBe(false);
    expect(g.usedInMemory('rt', 'never', T0)).toBe(false);
    expect(g.storeWindow.reads).toBe(0);
  });

  it('a failed load fails the request and is retried by the next one', async () => {
    const store = createFakeGrantStore();
    let fail = true;
    const flaky = Object.assign(Object.create(store) as MemoryGrantStore, {
      liveRequests: (since: number, limit: number) =>
        fail ? Promise.reject(new Error('io error')) : store.liveRequests(since, limit),
    });
    const g = new ReplayGuard(flaky, 10, { skewMs: SKEW, graceMs: SKEW });
    await expect(g.ready(T0)).rejects.toThrow('io error');
    expect(g.usedInMemory('rt', 'x', T0)).toBeUndefined();
    fail = false;
    await g.ready(T0);
    expect(g.usedInMemory('rt', 'x', T0)).toBe(false);
  });

  it('more live ids than the bound: the store is asked until all of them are past their time', async () => {
    const store = createFakeGrantStore();
    for (const id of ['a', 'b', 'c']) await store.putRequest('rt', id, T0 + SKEW);
    const g = guard(store, 2);
    await g.ready(T0);
    // Two of the three made it into memory: what memory holds is an answer...
    expect(g.usedInMemory('rt', 'a', T0)).toBe(true);
    // ...a miss is the store's to answer.
    expect(g.usedInMemory('rt', 'c', T0)).toBeUndefined();
    expect(g.storeWindow.until).toBe(T0 + 3 * SKEW);
    expect(await g.persisted('rt', 'c')).toBe(true);
    expect(g.storeWindow.reads).toBe(1);
    expect(g.usedInMemory('rt', 'zzz', T0 + 3 * SKEW)).toBe(false);
  });

  it('an id evicted before its time sends misses to the store until its expiry plus grace', async () => {
    const store = createFakeGrantStore();
    const g = guard(store, 2);
    await g.ready(T0);
    for (const id of ['a', 'b', 'c']) {
      g.reserve('rt', id, T0 + SKEW, T0);
      await g.persist('rt', id, T0 + SKEW);
    }
    expect(g.seen('rt', 'a', T0)).toBe(false);
    expect(g.usedInMemory('rt', 'a', T0)).toBeUndefined();
    expect(await g.persisted('rt', 'a')).toBe(true);
    expect(g.storeWindow.until).toBe(T0 + 2 * SKEW);
    expect(g.usedInMemory('rt', 'a', T0 + 2 * SKEW)).toBe(false);
  });

  it('never evicts a reservation whose write has not settled; counts exp == now as used', async () => {
    const g = guard(createFakeGrantStore(), 2);
    await g.ready(T0);
    g.reserve('rt', 'in-flight', T0 + SKEW, T0);
    g.reserve('rt', 'b', T0 + SKEW, T0);
    g.settled('rt', 'b');
    g.reserve('rt', 'c', T0 + SKEW, T0);
    g.settled('rt', 'c');
    expect(g.usedInMemory('rt', 'in-flight', T0)).toBe(true);
    expect(g.usedInMemory('rt', 'b', T0)).toBeUndefined();
    expect(g.seen('rt', 'in-flight', T0 + SKEW)).toBe(true);
    expect(g.seen('rt', 'in-flight', T0 + SKEW + 1)).toBe(false);
    // Settled through a write of its own, it can go like any other.
    await g.persist('rt', 'in-flight', T0 + SKEW);
    g.reserve('rt', 'd', T0 + SKEW, T0);
    expect(g.usedInMemory('rt', 'in-flight', T0)).toBeUndefined();
  });

  it('forgettable entries (past expiry plus grace) are evicted first, without the store', async () => {
    const g = guard(createFakeGrantStore(), 2);
    await g.ready(T0);
    for (const [id, exp] of [
      ['old', T0 - 2 * SKEW],
      ['live', T0 + SKEW],
      ['new', T0 + SKEW],
    ] as const) {
      g.reserve('rt', id, exp, T0);
      g.settled('rt', id);
    }
    expect(g.usedInMemory('rt', 'live', T0)).toBe(true);
    expect(g.usedInMemory('rt', 'new', T0)).toBe(true);
    expect(g.size).toBe(2);
    expect(g.storeWindow.until).toBe(Number.NEGATIVE_INFINITY);
  });
});
