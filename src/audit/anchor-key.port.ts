/**
 * The key that authorises every write to the audit anchor's NV indices (TPM2_PolicySigned,
 * anchor-policy.ts): a non-extractable P-256 key in the appliance's key store, found by its
 * label. Real adapter: anchor-key.pkcs11.ts.
 */

/** CKA_LABEL of the anchor write key on the audit token. */
export const ANCHOR_KEY_LABEL = 'grantor-audit-anchor-write';

export interface AnchorWriteKey {
  /**
   * The key's public point, uncompressed SEC1 (0x04 ‖ x ‖ y, 65 bytes). Rejects with
   * AnchorKeyError when the token has no such key (or more than one, or one that could
   * leave the token).
   */
  publicPoint(): Promise<Buffer>;
  /**
   * ECDSA over each digest as given (already SHA-256), in order, in one use of the key (on
   * a signing thread, one hand-off for all of them): r ‖ s, 64 bytes each. Rejects as a
   * whole when one fails.
   */
  signDigests(digests: readonly Buffer[]): Promise<Buffer[]>;
  /** Idempotent. */
  close(): Promise<void>;
}
