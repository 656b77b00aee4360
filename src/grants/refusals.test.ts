import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../shared/errors.js';
import { GrantRefusalWindow } from './refusals.js';

const CODES: readonly ErrorCode[] = [
  'request_stale',
  'request_replayed',
  'session_not_live',
  'grant_parent_not_found',
];

describe('GrantRefusalWindow', () => {
  it('writes the first refusal of a key per window and the repeats with the next one', () => {
    const w = new GrantRefusalWindow({ windowSeconds: 60 });
    expect(w.admit('rt_a', 'request_stale', 0)).toEqual({ write: true, repeats: 0, dropped: 0 });
    expect(w.admit('rt_a', 'request_stale', 1000)).toEqual({ write: false });
    expect(w.admit('rt_a', 'request_stale', 2000)).toEqual({ write: false });
    // Another code of the same runtime is its own key.
    expect(w.admit('rt_a', 'request_replayed', 3000)).toMatchObject({ write: true });
    expect(w.admit('rt_a', 'request_stale', 60_000)).toEqual({
      write: true,
      repeats: 2,
      dropped: 0,
    });
  });

  it('budgets per runtime and in all; what is over budget is counted as dropped', () => {
    const w = new GrantRefusalWindow({
      windowSeconds: 60,
      maxEntriesPerWindow: 3,
      maxPerRuntime: 2,
    });
    expect(w.admit('rt_a', 'request_stale', 0).write).toBe(true);
    expect(w.admit('rt_a', 'request_replayed', 0).write).toBe(true);
    expect(w.admit('rt_a', 'session_not_live', 0).write).toBe(false); // per runtime
    // The next entry written says what was dropped since the last one.
    expect(w.admit('rt_b', 'request_stale', 0)).toEqual({ write: true, repeats: 0, dropped: 1 });
    expect(w.admit('rt_c', 'request_stale', 0).write).toBe(false); // in all
    expect(w.admit('rt_d', 'request_stale', 60_000)).toEqual({
      write: true,
      repeats: 0,
      dropped: 1,
    });
  });

  it('property: entries per window never exceed the budget, and every refusal is written or counted', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(30), fc.nat(3), fc.nat(200_000)), { maxLength: 2000 }),
        (events) => {
          const w = new GrantRefusalWindow({
            windowSeconds: 60,
            maxEntriesPerWindow: 10,
            maxPerRuntime: 3,
            maxKeys: 16,
          });
          const sorted = [...events].sort((a, b) => a[2] - b[2]);
          let written = 0;
          let summarised = 0;
          const perWindow = new Map<number, number>();
          let windowStart = Number.NEGATIVE_INFINITY;
          for (const [rt, c, t] of sorted) {
            if (t - windowStart >= 60_000) windowStart = t;
            const a = w.admit(`rt_${rt}`, CODES[c] ?? 'request_stale', t);
            if (a.write) {
              written += 1;
              summarised += a.repeats + a.dropped;
              perWindow.set(windowStart, (perWindow.get(windowStart) ?? 0) + 1);
            }
          }
          for (const n of perWindow.values()) expect(n).toBeLessThanOrEqual(10);
          expect(w.size).toBeLessThanOrEqual(16);
          expect(written + summarised).toBeLessThanOrEqual(sorted.length);
        },
      ),
    );
  });
});
