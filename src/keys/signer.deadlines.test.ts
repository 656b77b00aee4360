/**
 * The shared deadline timer of the signer: every entry that is still unanswered at its
 * deadline is expired exactly once, answered entries never are, and the queue lets go of
 * answered entries. Fake timers and an injected clock: nothing here depends on speed.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineQueue, type Expirable } from './signer.deadlines.js';

let clock = 0;

class Entry implements Expirable {
  settled = false;
  expired = 0;
  constructor(readonly deadline: number) {}
  expire(): void {
    this.expired += 1;
    this.settled = true;
  }
  answer(): void {
    this.settled = true;
  }
}

beforeEach(() => {
  vi.useFakeTimers();
  clock = 0;
});

afterEach(() => {
  vi.useRealTimers();
});

/** Move both the injected clock and the fake timers forward. */
function advance(ms: number): void {
  clock += ms;
  vi.advanceTimersByTime(ms);
}

describe('DeadlineQueue', () => {
  it('expires each unanswered entry once, at its deadline, and never an answered one', () => {
    const q = new DeadlineQueue(() => clock);
    const a = new Entry(100);
    const b = new Entry(100);
    q.add(a);
    q.add(b);
    advance(50);
    const c = new Entry(150);
    q.add(c);
    b.answer();
    advance(49);
    expect([a.expired, b.expired, c.expired]).toEqual([0, 0, 0]);
    advance(1);
    expect([a.expired, b.expired, c.expired]).toEqual([1, 0, 0]);
    advance(50);
    expect([a.expired, b.expired, c.expired]).toEqual([1, 0, 1]);
    advance(1000);
    expect([a.expired, b.expired, c.expired]).toEqual([1, 0, 1]);
    expect(q.size).toBe(0);
  });

  it('re-arms after a timer that fired before the clock reached the deadline', () => {
    let lag = 5;
    const q = new DeadlineQueue(() => clock - lag);
    const a = new Entry(100);
    q.add(a);
    advance(100);
    // The clock read 95 when the timer fired: not due yet, so it must fire again.
    expect(a.expired).toBe(0);
    lag = 0;
    advance(5);
    expect(a.expired).toBe(1);
  });

  it('lets go of answered entries as new ones come, without waiting for a deadline', () => {
    const q = new DeadlineQueue(() => clock);
    for (let i = 0; i < 10_000; i++) {
      const e = new Entry(clock + 5000);
      q.add(e);
      e.answer();
    }
    expect(q.size).toBe(1);
  });

  it('is re-armed by an add after it went idle', () => {
    const q = new DeadlineQueue(() => clock);
    const a = new Entry(10);
    q.add(a);
    advance(10);
    expect(a.expired).toBe(1);
    const b = new Entry(30);
    q.add(b);
    advance(20);
    expect(b.expired).toBe(1);
  });

  it('clear() stops the timer: nothing expires afterwards', () => {
    const q = new DeadlineQueue(() => clock);
    const a = new Entry(10);
    q.add(a);
    q.clear();
    advance(100);
    expect(a.expired).toBe(0);
    expect(q.size).toBe(0);
  });
});
