/**
 * Why this exists: a revoke walks a lineage tree and marks it, while child requests add to
 * the same tree. Without a common lock a child checked against a not-yet-revoked parent is
 * stored after the walk and escapes the cascade (issue 18). Child issuances on one root
 * share the lock (they run concurrently); a revoke holds it alone. A waiting revoke stops
 * new children from entering, so a steady stream of children cannot starve it. Keys with
 * nothing held or waiting are forgotten.
 */

interface Waiter {
  readonly exclusive: boolean;
  readonly start: () => void;
}

interface RootState {
  shared: number;
  exclusive: boolean;
  readonly queue: Waiter[];
}

export class RootLocks {
  readonly #roots = new Map<string, RootState>();

  /** Run `fn` beside other shared holders of `root`, never during an exclusive one. */
  shared<T>(root: string, fn: () => Promise<T>): Promise<T> {
    return this.#run(root, false, fn);
  }

  /** Run `fn` alone on `root`: after every holder before it, before any that come later. */
  exclusive<T>(root: string, fn: () => Promise<T>): Promise<T> {
    return this.#run(root, true, fn);
  }

  /** Roots held or waited for (for tests and bounds). */
  get size(): number {
    return this.#roots.size;
  }

  async #run<T>(root: string, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    let state = this.#roots.get(root);
    if (state === undefined) {
      state = { shared: 0, exclusive: false, queue: [] };
      this.#roots.set(root, state);
    }
    const s = state;
    const free = exclusive
      ? !s.exclusive && s.shared === 0 && s.queue.length === 0
      : !s.exclusive && s.queue.length === 0;
    if (free) {
      this.#take(s, exclusive);
    } else {
      await new Promise<void>((resolve) => {
        s.queue.push({ exclusive, start: resolve });
      });
    }
    try {
      return await fn();
    } finally {
      if (exclusive) s.exclusive = false;
      else s.shared -= 1;
      this.#wake(root, s);
    }
  }

  #take(s: RootState, exclusive: boolean): void {
    if (exclusive) s.exclusive = true;
    else s.shared += 1;
  }

  /** Start the waiters at the head of the queue that may run now. */
  #wake(root: string, s: RootState): void {
    while (!s.exclusive) {
      const next = s.queue[0];
      if (next === undefined) break;
      if (next.exclusive && s.shared > 0) break;
      s.queue.shift();
      this.#take(s, next.exclusive);
      next.start();
    }
    if (!s.exclusive && s.shared === 0 && s.queue.length === 0) this.#roots.delete(root);
  }
}
