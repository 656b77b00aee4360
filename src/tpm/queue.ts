/**
 * Runs tasks one at a time, in call order: one ESYS context serves one command at a time.
 * close() rejects what is still waiting, lets the running task finish, then runs the
 * closer once; it is idempotent.
 */
interface Waiting {
  readonly run: () => Promise<void>;
  readonly reject: (e: unknown) => void;
}

export class SerialQueue {
  readonly #closedError: () => Error;
  readonly #waiting: Waiting[] = [];
  #running: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(closedError: () => Error) {
    this.#closedError = closedError;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closing !== undefined) return Promise.reject(this.#closedError());
    return new Promise<T>((resolve, reject) => {
      this.#waiting.push({
        run: () => task().then(resolve, reject),
        reject,
      });
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#running !== undefined) return;
    const next = this.#waiting.shift();
    if (next === undefined) return;
    this.#running = next.run().finally(() => {
      this.#running = undefined;
      this.#pump();
    });
  }

  close(closer: () => void | Promise<void>): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    const waiting = this.#waiting.splice(0);
    for (const w of waiting) w.reject(this.#closedError());
    const running = this.#running ?? Promise.resolve();
    this.#closing = running.then(() => closer());
    return this.#closing;
  }
}
