/**
 * Batch dispatch of the PKCS#11 adapter, the parts that do not hold the pool: a sign from
 * its call to its answer, the batch limits, and the mapping of a thread's reply back onto
 * the signs of its batch.
 */
import pkcs11js from 'pkcs11js';
import { HsmDeadlineExceededError, HsmUnavailableError } from './errors.js';
import type { Expirable } from './signer.deadlines.js';
import type { KeyAlgorithm, PublicJwk } from './signer.port.js';
import { FAILED, SIGNATURE_SLOT, SKIPPED, type ThreadReply } from './signer.thread.pkcs11.js';

/** The most signs one thread takes in one batch (bounds the wait of the last in a batch). */
export const MAX_BATCH = 32;
/** Batches handed to one thread at a time: the next one waits in its port, not on us. */
export const PIPELINE_DEPTH = 2;

/** What the signer pinned of a loaded key. */
export interface Pinned {
  readonly alg: KeyAlgorithm;
  readonly label: string;
  readonly publicJwk: PublicJwk;
}

/** A sign from its call to its answer: the first of signature, error or deadline wins. */
export class PendingSign implements Expirable {
  settled = false;
  readonly promise: Promise<Uint8Array>;
  #resolveFn: (sig: Uint8Array) => void = () => undefined;
  #rejectFn: (e: Error) => void = () => undefined;

  readonly #deadlineMs: number;
  constructor(
    readonly hsmId: string,
    readonly pinned: Pinned,
    /** A copy of the caller's bytes (the caller may reuse its buffer). */
    readonly data: Uint8Array,
    readonly deadline: number,
    deadlineMs: number,
  ) {
    this.#deadlineMs = deadlineMs;
    this.promise = new Promise<Uint8Array>((resolve, reject) => {
      this.#resolveFn = resolve;
      this.#rejectFn = reject;
    });
  }

  resolve(sig: Uint8Array): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolveFn(sig);
  }

  reject(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.#rejectFn(e);
  }

  expire(): void {
    this.reject(new HsmDeadlineExceededError(this.#deadlineMs));
  }
}

export function rebuildPkcs11Error(error: { rv: number | undefined; name: string }): Error {
  return error.rv === undefined
    ? new Error(error.name)
    : new pkcs11js.Pkcs11Error(`${error.name}:${String(error.rv)}`, error.rv);
}

/**
 * Answer the signs of a batch from the thread's reply, in order. A failed item is answered
 * with `fault(error)` (the module's error rebuilt; the caller marks the connection broken
 * once), a skipped one with its deadline error.
 */
export function answerBatch(
  live: readonly PendingSign[],
  reply: ThreadReply,
  fault: (e: Error) => Error,
): void {
  let failure: Error | undefined;
  for (let i = 0; i < live.length; i++) {
    const req = live[i];
    const length = reply.lengths[i];
    if (req === undefined || length === undefined) continue;
    if (length === SKIPPED) {
      req.expire();
    } else if (length === FAILED) {
      failure ??= fault(
        rebuildPkcs11Error(reply.error ?? { rv: undefined, name: 'no error reported' }),
      );
      req.reject(failure);
    } else if (length !== 64) {
      req.reject(
        new HsmUnavailableError('the HSM returned a signature of unexpected length', {
          details: { length },
        }),
      );
    } else {
      req.resolve(reply.sigs.slice(SIGNATURE_SLOT * i, SIGNATURE_SLOT * i + 64));
    }
  }
}
