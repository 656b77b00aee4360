/**
 * Calls for the same key run one after another, in call order (a per-key mutex); calls for
 * different keys run concurrently. A failed call does not stop the ones queued behind it.
 * Keys with nothing queued are forgotten, so the map holds only keys with work in flight.
 */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Keys with work in flight or queued (for tests and bounds). */
  get size(): number {
    return this.#tails.size;
  }
}
