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
 * The thread's code is a plain JavaScript string run with `eval: true`, so it loads the
 * same way under tsx, vitest and the compiled dist (a .ts worker file would need a loader
 * in the thread). It holds no PIN and no secret: it sees handles, inputs and signatures.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

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
interface PackedBatch {
  readonly session: Uint8Array;
  readonly keys: Uint8Array[];
  /** Per item: key index, mechanism, sha256 (0/1), deadline, data offset, data length. */
  readonly meta: Float64Array<ArrayBuffer>;
  readonly data: Uint8Array<ArrayBuffer>;
}

const META = 6;

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
  readonly sigs: Uint8Array;
  readonly lengths: Int32Array;
  readonly error?: { readonly rv: number | undefined; readonly name: string };
}

export const SIGNATURE_SLOT = 64;
export const SKIPPED = -1;
export const FAILED = -2;

/**
 * Niceness of a signing thread (the event loop's thread keeps its own). The event loop is
 * the pipeline's critical path: with the threads below it, it answers a batch and hands
 * over the next one without waiting for a time slice (measured: event-loop delay p99
 * 2.8-4.9 ms at concurrency 16 instead of 5.4-6.5 ms, and a higher rate).
 */
const THREAD_NICE = 5;

const THREAD_SOURCE = String.raw`
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const pkcs11js = require(workerData.pkcs11js);
const SLOT = ${SIGNATURE_SLOT};
// On Linux this lowers the priority of this thread only: when the threads keep every core
// busy, the event loop still runs first.
try { require('node:os').setPriority(workerData.nice); } catch {}
let p;
const buf = (u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
parentPort.on('message', (batch) => {
  const meta = batch.meta;
  const n = meta.length / ${META};
  const sigs = new Uint8Array(SLOT * n);
  const lengths = new Int32Array(n);
  let error;
  const session = buf(batch.session);
  const keys = batch.keys.map(buf);
  for (let i = 0; i < n; i++) {
    const m = ${META} * i;
    if (error !== undefined) { lengths[i] = ${FAILED}; continue; }
    if (performance.timeOrigin + performance.now() > meta[m + 3]) { lengths[i] = ${SKIPPED}; continue; }
    try {
      if (p === undefined) {
        const q = new pkcs11js.PKCS11();
        q.load(workerData.modulePath);
        p = q;
      }
      const data = Buffer.from(batch.data.buffer, batch.data.byteOffset + meta[m + 4], meta[m + 5]);
      const input = meta[m + 2] === 1 ? createHash('sha256').update(data).digest() : data;
      p.C_SignInit(session, { mechanism: meta[m + 1] }, keys[meta[m]]);
      lengths[i] = p.C_Sign(session, input, Buffer.from(sigs.buffer, SLOT * i, SLOT)).length;
    } catch (e) {
      const isPkcs11 = e instanceof pkcs11js.Pkcs11Error;
      error = { rv: isPkcs11 ? e.code : undefined, name: isPkcs11 ? e.message : 'the signing thread could not call the module' };
      lengths[i] = ${FAILED};
    }
  }
  parentPort.postMessage(error === undefined ? { sigs, lengths } : { sigs, lengths, error }, [sigs.buffer, lengths.buffer]);
});
`;

let pkcs11jsPath: string | undefined;

interface Pending {
  resolve(reply: ThreadReply): void;
  reject(e: Error): void;
}

/**
 * One worker thread; spawned on first use, respawned after a loss. Batches queue in the
 * thread's message port and are answered in order, so the adapter can hand a thread its
 * next batch before the current one is done (the thread then never waits for the event
 * loop between two batches).
 */
export class SignThread {
  private worker: Worker | undefined;
  private readonly pending: Pending[] = [];

  constructor(private readonly modulePath: string) {}

  /** Batches handed over and not yet answered. */
  get inFlight(): number {
    return this.pending.length;
  }

  /**
   * Sign a batch on `session`, in order. Rejects only if the thread is lost (crashed or
   * terminated) meanwhile; failures of the module are in the reply.
   */
  run(session: Uint8Array, items: readonly ThreadItem[]): Promise<ThreadReply> {
    const batch = pack(session, items);
    const w = this.worker ?? this.spawn();
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      // A busy thread keeps the process alive until its batches are answered; an idle one not.
      if (this.pending.length === 1) w.ref();
      w.postMessage(batch, [batch.meta.buffer, batch.data.buffer]);
    });
  }

  /** Terminate the thread (the caller waits until no batch is in flight first). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.failPending(new Error('the signing thread was closed with a batch in flight'));
    if (w !== undefined) await w.terminate();
  }

  private spawn(): Worker {
    pkcs11jsPath ??= createRequire(import.meta.url).resolve('pkcs11js');
    const w = new Worker(THREAD_SOURCE, {
      eval: true,
      // No tsx or vitest loader in the thread: it runs plain JavaScript.
      execArgv: [],
      workerData: { pkcs11js: pkcs11jsPath, modulePath: this.modulePath, nice: THREAD_NICE },
    });
    w.unref();
    w.on('message', (reply: ThreadReply) => {
      const p = this.pending.shift();
      if (this.pending.length === 0) w.unref();
      p?.resolve(reply);
    });
    w.on('error', (e: Error) => {
      this.lost(w, e);
    });
    w.on('exit', (code: number) => {
      this.lost(w, new Error(`the signing thread exited with code ${String(code)}`));
    });
    this.worker = w;
    return w;
  }

  private lost(w: Worker, e: Error): void {
    // An 'exit' after the 'error' of the same thread, or after close(): already failed.
    if (this.worker !== w) return;
    this.worker = undefined;
    this.failPending(e);
  }

  private failPending(e: Error): void {
    for (const p of this.pending.splice(0)) p.reject(e);
  }
}
