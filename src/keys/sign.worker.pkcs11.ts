/**
 * The body of a signing thread of the PKCS#11 adapter (signer.thread.pkcs11.ts starts it):
 * signs each batch it is handed synchronously, C_SignInit then C_Sign per item, on the
 * session the batch names, and answers with the signatures. It decides nothing else.
 *
 * It never initialises, logs in or finalises the module: its own pkcs11js instance only
 * dlopen()s the module the main thread already loaded (same copy, same C_Initialize), and
 * the session and key handles it is given are process-wide. It holds no PIN and no secret:
 * it sees handles, inputs and signatures.
 */
import { createHash } from 'node:crypto';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';
import {
  FAILED,
  META,
  SIGNATURE_SLOT,
  SKIPPED,
  type FromThread,
  type PackedBatch,
  type ThreadData,
  type ThreadError,
  type ThreadReply,
} from './signer.thread.pkcs11.js';

const port = parentPort;
if (port === null) throw new TypeError('sign.worker.pkcs11.ts runs on a worker thread only');
const data = workerData as ThreadData;

// On Linux this lowers the priority of this thread only: when the threads keep every core
// busy, the event loop still runs first. `data.nice` is added to the niceness this thread
// inherited from the event loop's, so an appliance started under `nice` keeps its threads
// below the event loop too (an absolute value there would raise them above it as root).
try {
  setPriority(Math.min(19, getPriority() + data.nice));
} catch {
  // Not permitted here: sign at the inherited priority.
}

/** Loaded on the first item, so that a module that cannot be loaded fails that item. */
let module: pkcs11js.PKCS11 | undefined;

const view = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function describeFailure(e: unknown): ThreadError {
  return e instanceof pkcs11js.Pkcs11Error
    ? { rv: e.code, name: e.message }
    : { rv: undefined, name: 'the signing thread could not call the module' };
}

function signBatch(batch: PackedBatch): ThreadReply {
  const meta = batch.meta;
  const n = meta.length / META;
  const sigs = new Uint8Array(SIGNATURE_SLOT * n);
  const lengths = new Int32Array(n);
  let error: ThreadError | undefined;
  const session = view(batch.session);
  const keys = batch.keys.map(view);
  for (let i = 0; i < n; i++) {
    const m = META * i;
    if (error !== undefined) {
      lengths[i] = FAILED;
      continue;
    }
    // Nobody waits for this signature any more: do not spend the module's time on it.
    if (performance.timeOrigin + performance.now() > (meta[m + 3] ?? 0)) {
      lengths[i] = SKIPPED;
      continue;
    }
    try {
      if (module === undefined) {
        const q = new pkcs11js.PKCS11();
        q.load(data.modulePath);
        module = q;
      }
      const key = keys[meta[m] ?? -1];
      if (key === undefined) throw new RangeError('a batch item names no key');
      const input = Buffer.from(
        batch.data.buffer,
        batch.data.byteOffset + (meta[m + 4] ?? 0),
        meta[m + 5] ?? 0,
      );
      const digest = meta[m + 2] === 1 ? createHash('sha256').update(input).digest() : input;
      module.C_SignInit(session, { mechanism: meta[m + 1] ?? 0 }, key);
      const slot = Buffer.from(sigs.buffer, SIGNATURE_SLOT * i, SIGNATURE_SLOT);
      lengths[i] = module.C_Sign(session, digest, slot).length;
    } catch (e) {
      error = describeFailure(e);
      lengths[i] = FAILED;
    }
  }
  return error === undefined ? { sigs, lengths } : { sigs, lengths, error };
}

port.on('message', (batch: PackedBatch) => {
  const reply = signBatch(batch);
  port.postMessage(reply, [reply.sigs.buffer, reply.lengths.buffer]);
});
// Batches posted while the thread started are delivered now; the adapter signs from here.
const ready: FromThread = 'ready';
port.postMessage(ready);
