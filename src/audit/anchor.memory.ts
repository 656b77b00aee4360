/**
 * An in-memory anchor with the TPM's semantics (extend = SHA-256(old ‖ data), monotonic
 * counter, genesis as after provisioning), for unit tests and benches of the log core.
 * Faults can be scripted per operation. Not for production: the real one is anchor.tpm.ts.
 */
import type { AnchorState, AuditAnchor, NvCertification } from './anchor.port.js';
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { AuditRollbackError } from './errors.js';

export type AnchorOp = 'read' | 'extend' | 'increment';

export interface AnchorFault {
  readonly op: AnchorOp;
  readonly error: Error;
  /** The command executed before the error was reported (a lost response). */
  readonly executed?: boolean;
}

export class MemoryAnchor implements AuditAnchor {
  counter: bigint;
  /** Pinned at construction: the counter as provisioned (set `undefined` for "never provisioned"). */
  genesis: bigint | undefined;
  readonly pinnedNames = undefined;
  extendValue: Buffer = Buffer.from(GENESIS_EXTEND);
  pinnedNamesMatch = true;
  readonly faults: AnchorFault[] = [];
  readonly calls: Record<AnchorOp, number> = { read: 0, extend: 0, increment: 0 };
  /** Calls of writeBatch (each also counts its extend and increment in `calls`). */
  batchWrites = 0;

  constructor(initialCounter = 1n) {
    this.counter = initialCounter;
    this.genesis = initialCounter;
  }

  #fault(op: AnchorOp): AnchorFault | undefined {
    this.calls[op] += 1;
    const i = this.faults.findIndex((f) => f.op === op);
    if (i < 0) return undefined;
    return this.faults.splice(i, 1)[0];
  }

  checkPinned(): Promise<void> {
    if (!this.pinnedNamesMatch) {
      return Promise.reject(
        new AuditRollbackError('NV name of the counter index is not the pinned one'),
      );
    }
    return Promise.resolve();
  }

  read(): Promise<AnchorState> {
    const f = this.#fault('read');
    if (f !== undefined) return Promise.reject(f.error);
    return Promise.resolve({ counter: this.counter, extendValue: Buffer.from(this.extendValue) });
  }

  readAfterWrite(): Promise<AnchorState> {
    return this.read();
  }

  extend(data: Buffer): Promise<void> {
    const f = this.#fault('extend');
    if (f?.executed === true) this.extendValue = extendDigest(this.extendValue, data);
    if (f !== undefined) return Promise.reject(f.error);
    this.extendValue = extendDigest(this.extendValue, data);
    return Promise.resolve();
  }

  increment(): Promise<void> {
    const f = this.#fault('increment');
    if (f?.executed === true) this.counter += 1n;
    if (f !== undefined) return Promise.reject(f.error);
    this.counter += 1n;
    return Promise.resolve();
  }

  /** The two writes in order once `stored` resolves; faults apply to each as scripted. */
  async writeBatch(
    root: Buffer,
    stored: Promise<void>,
    landed: (write: 'extend' | 'increment') => void,
  ): Promise<void> {
    this.batchWrites += 1;
    await stored;
    await this.extend(root);
    landed('extend');
    await this.increment();
    landed('increment');
  }

  certify(qualifyingData: Buffer): Promise<NvCertification[]> {
    // No TPM, no AK: a recognisable placeholder so callers can be tested for plumbing only.
    const attest = Buffer.concat([Buffer.from('memory-anchor:'), qualifyingData]);
    return Promise.resolve([
      { index: 'counter', nvIndex: 0x01500020, attest, signature: Buffer.alloc(0) },
      { index: 'extend', nvIndex: 0x01500021, attest, signature: Buffer.alloc(0) },
    ]);
  }

  akPublic(): Promise<Buffer | undefined> {
    return Promise.resolve(undefined);
  }
}
