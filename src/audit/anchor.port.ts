/**
 * The audit log's view of its TPM anchor: an NV counter and an NV extend index
 * (TPM_NT_EXTEND, SHA-256), both defined at provisioning and their NV names pinned in
 * configuration. The log core decides the order of writes (see docs/audit.md); adapters
 * perform single TPM commands, or a batch's two writes in that order (`writeBatch`). Real
 * adapter: anchor.tpm.ts.
 */
import { createHash } from 'node:crypto';
import { EMPTY_ROOT } from './merkle.js';

export interface AnchorState {
  /** The NV counter's value. */
  readonly counter: bigint;
  /** The extend index's 32-byte value. */
  readonly extendValue: Buffer;
}

/** One TPM2_NV_Certify of an anchor index, as the TPM produced it. */
export interface NvCertification {
  readonly index: 'counter' | 'extend';
  /** The NV index handle, e.g. 0x01500020. */
  readonly nvIndex: number;
  /** TPMS_ATTEST (type TPM_ST_ATTEST_NV), marshalled. */
  readonly attest: Buffer;
  /** TPMT_SIGNATURE by the appliance AK over `attest`, marshalled. */
  readonly signature: Buffer;
}

export interface AuditAnchor {
  /**
   * The counter value at provisioning, pinned in operator configuration beside the NV names
   * (never read from the store); `undefined`: the appliance was never provisioned. Batch i
   * (0-based) is anchored at genesis + i + 1, and a new log starts only on a counter equal
   * to it (docs/audit.md "The anchor").
   */
  readonly genesis: bigint | undefined;
  /** The pinned NV names (hex), published for auditors to compare with their own pin. */
  readonly pinnedNames: { readonly counter: string; readonly extend: string } | undefined;
  /**
   * Compare the indices' NV names (which cover their attributes and auth policy) with the
   * pinned ones; a redefined index is tampering. Rejects with AuditRollbackError.
   */
  checkPinned(): Promise<void>;
  read(): Promise<AnchorState>;
  /**
   * A plain read (NV_Read) after each anchor write, to notice a third party's write at the
   * next batch instead of the next start. Not proof against a bus interposer: `read()` is.
   */
  readAfterWrite(): Promise<AnchorState>;
  /** TPM2_NV_Extend of the extend index with `data` (a 32-byte tree root). */
  extend(data: Buffer): Promise<void>;
  /** TPM2_NV_Increment of the counter. */
  increment(): Promise<void>;
  /**
   * Both writes of one batch, NV_Extend with `root` then NV_Increment, with what touches no
   * NV (policy sessions, the write key's signatures) done while `stored` is pending: the
   * log's store write and the TPM's preparation overlap, and the extend is sent only once
   * `stored` has resolved (the write order is the log's: store, extend, increment). When
   * `stored` rejects nothing is written and this rejects with its error. `landed` is called
   * with each write as it takes effect; on a failure, the writes `landed` named are the ones
   * done, and the rejection is the next one's error (as `extend()` or `increment()` would
   * reject). Optional: without it the log calls `extend()` and `increment()`.
   */
  writeBatch?(
    root: Buffer,
    stored: Promise<void>,
    landed: (write: 'extend' | 'increment') => void,
  ): Promise<void>;
  /** TPM2_NV_Certify of both indices, qualified with `qualifyingData`. */
  certify(qualifyingData: Buffer): Promise<NvCertification[]>;
  /** The AK that signs NV_Certify, TPM2B_PUBLIC marshalled, when the anchor has one. */
  akPublic(): Promise<Buffer | undefined>;
}

/** E' = SHA-256(E ‖ data): what TPM2_NV_Extend does to a SHA-256 extend index. */
export function extendDigest(previous: Uint8Array, data: Uint8Array): Buffer {
  return createHash('sha256').update(previous).update(data).digest();
}

/**
 * The extend index right after provisioning: one extend of the empty tree's root into the
 * all-zero initial value. Provisioning writes both indices once, so their NV names (which
 * include TPMA_NV_WRITTEN) are final before they are pinned.
 */
export const GENESIS_EXTEND = extendDigest(Buffer.alloc(32), EMPTY_ROOT);
