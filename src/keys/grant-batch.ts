/**
 * The queue of batch-signed grants (docs/protocol.md §3, "Batch-signed grants"): grants
 * wait here until the batch is full (`maxSize`) or its first grant has waited `maxWaitMs`,
 * then the whole batch goes to one key operation (KeyService#signBatch). Batches do not
 * wait for each other: the next one fills while the previous one is being signed.
 */
import { HsmUnavailableError } from './errors.js';

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
  private open: BatchItem[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly options: GrantBatchOptions,
    /** Signs one closed batch and settles every item of it. Never rejects. */
    private readonly signBatch: (items: BatchItem[]) => Promise<void>,
  ) {
    if (!Number.isInteger(options.maxSize) || options.maxSize < 2 || options.maxSize > 4096)
      throw new RangeError('maxSize must be an integer in 2..4096');
    if (!Number.isInteger(options.maxWaitMs) || options.maxWaitMs < 0)
      throw new RangeError('maxWaitMs must be a non-negative integer');
  }

  /** The compact batch-signed grant of this item, once its batch is signed. */
  add(item: Omit<BatchItem, 'resolve' | 'reject'>): Promise<string> {
    if (this.closed) return Promise.reject(new HsmUnavailableError('the key service is closed'));
    return new Promise<string>((resolve, reject) => {
      this.open.push({ ...item, resolve, reject });
      if (this.open.length >= this.options.maxSize) {
        this.flush();
      } else if (this.timer === undefined) {
        this.timer = setTimeout(this.flush, this.options.maxWaitMs);
      }
    });
  }

  /** Close the open batch now (its deadline, or a full batch). */
  private readonly flush = (): void => {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.open;
    this.open = [];
    if (items.length > 0) void this.signBatch(items);
  };

  /** Refuse new grants and fail the open batch (fail closed: nothing is signed after close). */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.open;
    this.open = [];
    const error = new HsmUnavailableError('the key service is closed');
    for (const item of items) item.reject(error);
  }
}
