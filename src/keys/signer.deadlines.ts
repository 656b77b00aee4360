/**
 * One timer for all pending sign deadlines, instead of a setTimeout and a Promise.race per
 * sign (both showed in the profile of the signing path). Every deadline has the same
 * length and is counted from a monotonic clock, so entries arrive in deadline order: the
 * timer is armed for the oldest entry still unanswered, and when it fires it expires every
 * entry that is due and re-arms for the next. An entry answered in time costs a push.
 */

export interface Expirable {
  /** When the entry is due, on the queue's clock (non-decreasing from one add to the next). */
  readonly deadline: number;
  /** True once answered; an answered entry is dropped without a call. */
  readonly settled: boolean;
  /** Answer the entry with its deadline error. */
  expire(): void;
}

export class DeadlineQueue {
  #entries: Expirable[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  readonly #now: () => number;
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  add(entry: Expirable): void {
    // Answered entries leave from the head as new ones come, so the queue holds about the
    // signs in flight, not every sign of the last deadline period.
    this.#dropSettled();
    this.#entries.push(entry);
    if (this.#timer === undefined) this.#arm();
  }

  /** Pending entries (answered ones not yet swept included); for tests. */
  get size(): number {
    return this.#entries.length - this.#head;
  }

  /** Stop the timer and forget every entry (their owner answers them). */
  clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#entries = [];
    this.#head = 0;
  }

  #arm(): void {
    this.#dropSettled();
    const first = this.#entries[this.#head];
    if (first === undefined) return;
    this.#timer = setTimeout(this.#sweep, Math.max(0, first.deadline - this.#now()));
    // Pending signs keep the process alive by their own work, not by this timer.
    this.#timer.unref();
  }

  readonly #sweep = (): void => {
    this.#timer = undefined;
    const now = this.#now();
    for (;;) {
      const e = this.#entries[this.#head];
      if (e === undefined || (!e.settled && e.deadline > now)) break;
      this.#head += 1;
      if (!e.settled) e.expire();
    }
    this.#arm();
  };

  #dropSettled(): void {
    while (this.#entries[this.#head]?.settled === true) this.#head += 1;
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }
}
