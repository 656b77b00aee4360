/**
 * A signing thread of the PKCS#11 adapter: a worker_thread that signs batches of requests
 * synchronously (C_SignInit then C_Sign per request) on the session it is handed.
 *
 * The thread only signs. The adapter on the main thread owns the module's lifecycle
 * (C_Initialize, C_Finalize, login, sessions, key handles) and counts a batch as a native
 * call in flight, so the module is never finalised under a thread. PKCS#11 handles are
 * process-wide, so the session and key handles of the main thread are valid here; the
 * thread's own pkcs11js instance only dlopen()s the module already loaded (same copy, same
 * C_Initialize) and never initialises, logs in or finalises it.
 *
 * The thread's body is a real source file, sign.worker.pkcs11.ts, started like every worker
 * (src/shared/worker.ts). The adapter starts its threads when it opens and waits for each
 * to say it is ready before it hands out batches: under tsx a thread takes longer to boot
 * than a sign's deadline, which must never be spent on a thread that is still starting.
 */
import type { Worker } from 'node:worker_threads';
import { startWorker, workerEntry } from '../shared/worker.js';

export interface ThreadItem {
  readonly key: Uint8Array;
  readonly mechanism: number;
  /** ES256: the thread hashes `data` with SHA-256 and signs the digest (CKM_ECDSA). */
  readonly sha256: boolean;
  readonly data: Uint8Array;
  /** Epoch milliseconds after which nobody waits for this signature: skip it. */
  readonly deadline: number;
}

/**
 * A batch as it crosses to the thread: the inputs packed into one buffer and the numbers
 * into another, both transferred rather than copied, and each distinct key handle once.
 * (A handle Buffer from pkcs11js can be a view of an 8 KiB pool slab, which a structured
 * clone would copy whole: handles are copied into buffers of their own first.)
 */
export interface PackedBatch {
  readonly session: Uint8Array;
  readonly keys: Uint8Array[];
  /** Per item: key index, mechanism, sha256 (0/1), deadline, data offset, data length. */
  readonly meta: Float64Array<ArrayBuffer>;
  readonly data: Uint8Array<ArrayBuffer>;
}

export const META = 6;

function pack(session: Uint8Array, items: readonly ThreadItem[]): PackedBatch {
  const keys: Uint8Array[] = [];
  // The adapter hands the same Buffer for the same key: identity finds the repeats.
  const keyIndex = new Map<Uint8Array, number>();
  const meta = new Float64Array(META * items.length);
  let size = 0;
  for (const item of items) size += item.data.byteLength;
  const data = new Uint8Array(size);
  let offset = 0;
  let m = 0;
  for (const item of items) {
    let k = keyIndex.get(item.key);
    if (k === undefined) {
      k = keys.push(new Uint8Array(item.key)) - 1;
      keyIndex.set(item.key, k);
    }
    data.set(item.data, offset);
    meta[m] = k;
    meta[m + 1] = item.mechanism;
    meta[m + 2] = item.sha256 ? 1 : 0;
    meta[m + 3] = item.deadline;
    meta[m + 4] = offset;
    meta[m + 5] = item.data.byteLength;
    offset += item.data.byteLength;
    m += META;
  }
  return { session: new Uint8Array(session), keys, meta, data };
}

/**
 * One reply per batch. `sigs` holds 64 bytes per item; `lengths[i]` is the length C_Sign
 * returned for item i, -1 when it was skipped after its deadline, -2 when it failed (with
 * `error`: after the first failure the rest of the batch is not attempted and fails alike).
 */
export interface ThreadReply {
  readonly sigs: Uint8Array<ArrayBuffer>;
  readonly lengths: Int32Array<ArrayBuffer>;
  readonly error?: ThreadError;
}

/** A failure of the module in a batch: its return value, if it was a PKCS#11 error. */
export interface ThreadError {
  readonly rv: number | undefined;
  readonly name: string;
}

/** What a thread posts: `'ready'` once, when it listens, then one reply per batch. */
export type FromThread = ThreadReply | 'ready';

/** The thread's workerData. */
export interface ThreadData {
  readonly modulePath: string;
  /** Added to the niceness the thread inherits from the event loop (at most 19). */
  readonly nice: number;
}

export const SIGNATURE_SLOT = 64;
export const SKIPPED = -1;
export const FAILED = -2;

/**
 * Niceness of a signing thread above the event loop's (which keeps its own). The event loop is
 * the pipeline's critical path: with the threads below it, it answers a batch and hands
 * over the next one without waiting for a time slice (measured: event-loop delay p99
 * 2.8-4.9 ms at concurrency 16 instead of 5.4-6.5 ms, and a higher rate).
 */
const THREAD_NICE = 5;

const THREAD_ENTRY = workerEntry('sign.worker.pkcs11', import.meta.url);

/**
 * How long a thread may take to say it is ready (booting under tsx on a loaded machine takes
 * seconds). One that takes longer is terminated and its start fails: the adapter's open()
 * then fails typed instead of hanging, and a restart counts as a fault, so the connection
 * is recovered and the thread started again rather than waited for forever.
 */
const BOOT_TIMEOUT_MS = 60_000;

interface Pending {
  resolve(reply: ThreadReply): void;
  reject(e: Error): void;
}

/**
 * One worker thread; started by `start()` (or on first use), restarted after a loss.
 * Batches queue in the thread's message port and are answered in order, so the adapter can
 * hand a thread its next batch before the current one is done (the thread then never waits
 * for the event loop between two batches).
 */
export class SignThread {
  #worker: Worker | undefined;
  #booting: Promise<void> | undefined;
  #isReady = false;
  /** Fails the start in progress, if any (a no-op once the thread is ready). */
  #bootFailed: (e: Error) => void = () => undefined;
  readonly #pending: Pending[] = [];

  readonly #modulePath: string;
  readonly #bootTimeoutMs: number;
  constructor(modulePath: string, bootTimeoutMs = BOOT_TIMEOUT_MS) {
    this.#modulePath = modulePath;
    this.#bootTimeoutMs = bootTimeoutMs;
  }

  /** Batches handed over and not yet answered. */
  get inFlight(): number {
    return this.#pending.length;
  }

  /** True from start (or first use) until the thread is lost or closed. */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /** True once the running thread listens; false while it starts and after a loss. */
  get ready(): boolean {
    return this.#isReady;
  }

  /**
   * Start the thread if none runs; resolves once it listens for batches, rejects if it is
   * lost (or closed) before that.
   */
  start(): Promise<void> {
    if (this.#worker === undefined) this.#spawn();
    return this.#booting ?? Promise.resolve();
  }

  /**
   * Sign a batch on `session`, in order. Rejects only if the thread is lost (crashed or
   * terminated) meanwhile; failures of the module are in the reply.
   */
  run(session: Uint8Array, items: readonly ThreadItem[]): Promise<ThreadReply> {
    const batch = pack(session, items);
    const w = this.#worker ?? this.#spawn();
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      // A busy thread keeps the process alive until its batches are answered; an idle one not.
      if (this.#pending.length === 1) w.ref();
      w.postMessage(batch, [batch.meta.buffer, batch.data.buffer]);
    });
  }

  /** Terminate the thread (the caller waits until no batch is in flight first). */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#forget(new Error('the signing thread was closed'));
    this.#failPending(new Error('the signing thread was closed with a batch in flight'));
    if (w !== undefined) await w.terminate();
  }

  #spawn(): Worker {
    const data: ThreadData = { modulePath: this.#modulePath, nice: THREAD_NICE };
    const w = startWorker(THREAD_ENTRY, { workerData: { ...data } });
    w.unref();
    let booted: () => void = () => undefined;
    let failed: (e: Error) => void = () => undefined;
    this.#booting = new Promise<void>((resolve, reject) => {
      booted = resolve;
      failed = reject;
    });
    // A boot nobody awaits (a thread started by run()) must not be an unhandled rejection.
    this.#booting.catch(() => undefined);
    this.#bootFailed = failed;
    const boot = setTimeout(() => {
      this.#lost(w, new Error(`the signing thread was not ready within ${this.#bootTimeoutMs} ms`));
      void w.terminate();
    }, this.#bootTimeoutMs);
    boot.unref();
    w.on('message', (m: FromThread) => {
      if (m === 'ready') {
        clearTimeout(boot);
        if (this.#worker === w) this.#isReady = true;
        booted();
        return;
      }
      const p = this.#pending.shift();
      if (this.#pending.length === 0) w.unref();
      p?.resolve(m);
    });
    w.on('error', (e: Error) => {
      this.#lost(w, e);
    });
    w.on('exit', (code: number) => {
      clearTimeout(boot);
      this.#lost(w, new Error(`the signing thread exited with code ${String(code)}`));
    });
    this.#worker = w;
    this.#isReady = false;
    return w;
  }

  #lost(w: Worker, e: Error): void {
    // An 'exit' after the 'error' of the same thread, or after close(): already failed.
    if (this.#worker !== w) return;
    this.#forget(e);
    this.#failPending(e);
  }

  /** Let go of the running thread; a start still waiting for it fails with `e`. */
  #forget(e: Error): void {
    this.#worker = undefined;
    this.#isReady = false;
    this.#booting = undefined;
    this.#bootFailed(e);
    this.#bootFailed = () => undefined;
  }

  #failPending(e: Error): void {
    for (const p of this.#pending.splice(0)) p.reject(e);
  }
}
