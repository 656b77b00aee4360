/**
 * The queue of batch-signed grants (docs/protocol.md §3, "Batch-signed grants"): grants
 * wait here until the batch is full (`maxSize`) or its first grant has waited `maxWaitMs`,
 * then the whole batch goes to one key operation (KeyService#signBatch). The next batch
 * fills while earlier ones are being signed; at most MAX_IN_FLIGHT of them are signed at a
 * time on a deadline: past that, a batch whose deadline has passed closes as soon as one
 * finishes (a full batch closes at once). So a slow key store (a TPM) gets larger batches
 * instead of a queue of small ones, and a grant never waits for more than its deadline
 * plus one signature beyond what the key store's queue would make it wait anyway.
 *
 * While no batch is being signed the key is idle, and waiting for the deadline would only
 * add latency: the open batch then closes at the end of the event loop's turn (the grants
 * that turn brought share it). A fast key store (SoftHSM) thus signs about as soon as in
 * the JWS form, and batches form where they pay: behind a signature in progress.
 */
import { HsmUnavailableError } from './errors.js';

/** Batches signed at once before a due batch waits for one of them (see above). */
export const MAX_IN_FLIGHT = 2;

export interface GrantBatchOptions {
  /** Grants per batch (2..4096). */
  readonly maxSize: number;
  /** The longest a grant waits for its batch to close, ms (0: the next turn of the loop). */
  readonly maxWaitMs: number;
}

/** One grant waiting for its batch. */
export interface BatchItem {
  /** The protected header without alg and kid (the batch's key sets them). */
  readonly header: Readonly<Record<string, unknown>>;
  readonly payloadB64: string;
  /** The claims' exp: the batch's largest bounds how long its key stays published. */
  readonly exp: number;
  resolve(token: string): void;
  reject(e: Error): void;
}

export class GrantBatcher {
  #open: BatchItem[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The end-of-turn close of a batch opened while the key was idle. */
  #idle: NodeJS.Immediate | undefined;
  #closed = false;
  #inFlight = 0;
  /** The open batch's deadline passed while MAX_IN_FLIGHT batches were being signed. */
  #due = false;

  readonly #options: GrantBatchOptions;
  readonly #signBatch: (items: BatchItem[]) => Promise<void>;
  constructor(
    options: GrantBatchOptions,
    /** Signs one closed batch and settles every item of it. Never rejects. */
    signBatch: (items: BatchItem[]) => Promise<void>,
  ) {
    this.#options = options;
    this.#signBatch = signBatch;
    if (!Number.isInteger(options.maxSize) || options.maxSize < 2 || options.maxSize > 4096)
      throw new RangeError('maxSize must be an integer in 2..4096');
    if (!Number.isInteger(options.maxWaitMs) || options.maxWaitMs < 0)
      throw new RangeError('maxWaitMs must be a non-negative integer');
  }

  /** The compact batch-signed grant of this item, once its batch is signed. */
  add(item: Omit<BatchItem, 'resolve' | 'reject'>): Promise<string> {
    if (this.#closed) return Promise.reject(new HsmUnavailableError('the key service is closed'));
    return new Promise<string>((resolve, reject) => {
      this.#open.push({ ...item, resolve, reject });
      if (this.#open.length >= this.#options.maxSize) {
        this.#flush();
      } else if (this.#inFlight === 0) {
        this.#idle ??= setImmediate(this.#endOfTurn);
      } else {
        this.#arm();
      }
    });
  }

  /** Start the open batch's deadline (once). */
  #arm(): void {
    if (this.#timer === undefined && !this.#due) {
      this.#timer = setTimeout(this.#deadline, this.#options.maxWaitMs);
    }
  }

  /** The turn that opened a batch on an idle key is over: close it, unless the key got busy. */
  readonly #endOfTurn = (): void => {
    this.#idle = undefined;
    if (this.#open.length === 0) return;
    if (this.#inFlight === 0) this.#flush();
    else this.#arm();
  };

  /** The open batch's deadline: it closes now, or when a batch being signed is done. */
  readonly #deadline = (): void => {
    this.#timer = undefined;
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      this.#due = true;
      return;
    }
    this.#flush();
  };

  /** Close the open batch now and sign it. */
  #flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#idle !== undefined) clearImmediate(this.#idle);
    this.#idle = undefined;
    this.#due = false;
    const items = this.#open;
    this.#open = [];
    if (items.length === 0) return;
    this.#inFlight += 1;
    void this.#signBatch(items).finally(() => {
      this.#inFlight -= 1;
      if (this.#due && !this.#closed) this.#flush();
    });
  }

  /** Refuse new grants and fail the open batch (fail closed: nothing is signed after close). */
  close(): void {
    this.#closed = true;
    this.#due = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#idle !== undefined) clearImmediate(this.#idle);
    this.#idle = undefined;
    const items = this.#open;
    this.#open = [];
    const error = new HsmUnavailableError('the key service is closed');
    for (const item of items) item.reject(error);
  }
}
