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

export interface ThreadBatch {
  readonly session: Uint8Array;
  readonly items: readonly ThreadItem[];
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

const THREAD_SOURCE = String.raw`
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const pkcs11js = require(workerData.pkcs11js);
const SLOT = ${SIGNATURE_SLOT};
let p;
const buf = (u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
parentPort.on('message', (batch) => {
  const n = batch.items.length;
  const sigs = new Uint8Array(SLOT * n);
  const lengths = new Int32Array(n);
  let error;
  const session = buf(batch.session);
  for (let i = 0; i < n; i++) {
    const item = batch.items[i];
    if (error !== undefined) { lengths[i] = ${FAILED}; continue; }
    if (performance.timeOrigin + performance.now() > item.deadline) { lengths[i] = ${SKIPPED}; continue; }
    try {
      if (p === undefined) {
        const q = new pkcs11js.PKCS11();
        q.load(workerData.modulePath);
        p = q;
      }
      const input = item.sha256 ? createHash('sha256').update(item.data).digest() : buf(item.data);
      p.C_SignInit(session, { mechanism: item.mechanism }, buf(item.key));
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

/** One worker thread, one batch at a time; spawned on first use, respawned after a loss. */
export class SignThread {
  private worker: Worker | undefined;
  private pending:
    { resolve: (reply: ThreadReply) => void; reject: (e: Error) => void } | undefined;

  constructor(private readonly modulePath: string) {}

  /** Sign a batch. Rejects only if the thread is lost (crashed or terminated) meanwhile. */
  run(batch: ThreadBatch): Promise<ThreadReply> {
    if (this.pending !== undefined) return Promise.reject(new Error('the signing thread is busy'));
    const w = this.worker ?? this.spawn();
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      // A busy thread keeps the process alive until its batch is answered; an idle one not.
      w.ref();
      w.postMessage(batch);
    });
  }

  /** Terminate the thread (the caller waits until no batch is in flight first). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w !== undefined) await w.terminate();
  }

  private spawn(): Worker {
    pkcs11jsPath ??= createRequire(import.meta.url).resolve('pkcs11js');
    const w = new Worker(THREAD_SOURCE, {
      eval: true,
      // No tsx or vitest loader in the thread: it runs plain JavaScript.
      execArgv: [],
      workerData: { pkcs11js: pkcs11jsPath, modulePath: this.modulePath },
    });
    w.unref();
    w.on('message', (reply: ThreadReply) => {
      const p = this.pending;
      this.pending = undefined;
      w.unref();
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
    if (this.worker === w) this.worker = undefined;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }
}
