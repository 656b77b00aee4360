/**
 * The TPM as the appliance and the attester see it. Structures cross this port as their
 * TPM 2.0 marshalled bytes (parse them with ./marshal); handles are TPM handles
 * (0x80xxxxxx transient, 0x81xxxxxx persistent, 0x01xxxxxx NV). Every method returns a
 * Promise and rejects with a GrantorError: `tpm_error` (TpmError: rc, layer, decoded),
 * `tpm_unavailable` (TpmUnavailableError, TpmClosedError) or `bad_request`
 * (TpmArgumentError).
 */
import type { HashAlgName, NvSpace, PcrBankSelection, TimeInfo } from './marshal/index.js';

export type { HashAlgName, NvSpace, PcrBankSelection, TimeInfo } from './marshal/index.js';

export const TPM_HANDLE = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

export type Hierarchy = 'owner' | 'endorsement' | 'platform' | 'null';

/**
 * How to authorise an object: its auth value (password session), or for an EK the TCG EK
 * policy (PolicySecret on the endorsement hierarchy, in the EK's nameAlg).
 */
export interface TpmAuth {
  readonly value?: Uint8Array;
  readonly ekPolicy?: boolean;
  /** Endorsement hierarchy auth for the EK policy (empty by default). */
  readonly endorsementAuth?: Uint8Array;
}

/** NV authorisation: by the index's own auth value (default) or by the owner hierarchy. */
export interface NvAuth {
  readonly by?: 'index' | 'owner';
  readonly value?: Uint8Array;
}

export interface LoadedObject {
  readonly handle: number;
  /** The object's name: nameAlg (2 bytes) ‖ H(TPMT_PUBLIC). */
  readonly name: Buffer;
}

export interface PrimaryObject extends LoadedObject {
  /** TPM2B_PUBLIC */
  readonly public: Buffer;
}

export interface CreatedObject {
  /** TPM2B_PRIVATE (wrapped by the parent) */
  readonly private: Buffer;
  /** TPM2B_PUBLIC */
  readonly public: Buffer;
}

export interface PublicArea {
  /** TPM2B_PUBLIC, as `tpm2_readpublic -o` writes it */
  readonly public: Buffer;
  readonly name: Buffer;
  readonly qualifiedName: Buffer;
}

/** One PCR of one bank; `bank` as in {@link PcrBankSelection}. */
export interface PcrValue {
  readonly bank: HashAlgName;
  readonly pcr: number;
  readonly digest: Buffer;
}

export interface PcrRead {
  readonly updateCounter: number;
  /** In selection order: banks as requested, PCRs ascending. */
  readonly values: readonly PcrValue[];
}

export interface Attestation {
  /** TPMS_ATTEST, as `tpm2_quote -m` writes it */
  readonly attest: Buffer;
  /** TPMT_SIGNATURE, as `tpm2_quote -s` writes it */
  readonly signature: Buffer;
}

export interface NvPublic {
  /** TPM2B_NV_PUBLIC */
  readonly public: Buffer;
  readonly name: Buffer;
}

export interface SigningOptions {
  readonly signAuth?: TpmAuth;
  /** TPMT_SIG_SCHEME; default TPM_ALG_NULL (the key's own scheme). */
  readonly scheme?: Uint8Array;
}

/**
 * Who authorises an NV write through TPM2_PolicySigned: a key outside the TPM (the audit
 * anchor's HSM key). The TPM checks the signature with `public`, loaded as an external
 * public key for the one command.
 */
export interface PolicySigner {
  /** TPM2B_PUBLIC of the signing key (public part only). */
  readonly public: Uint8Array;
  /**
   * For each request, in order, a TPMT_SIGNATURE over aHash = SHA-256(nonceTPM ‖
   * expiration 0 ‖ cpHashA), policyRef empty (TPM 2.0 Part 3, 23.3): valid for that
   * session's nonce and for the one command whose parameter hash is `cpHashA`
   * (marshal/nv.ts nvWriteCpHash). All of them in one use of the key (one hand-off to a
   * signing thread): a batch's writes wait for one sign, not one per write.
   */
  sign(requests: readonly PolicySignRequest[]): Promise<Uint8Array[]>;
}

/** One PolicySigned authorisation to sign: the session's nonce and the command's cpHashA. */
export interface PolicySignRequest {
  readonly nonceTpm: Buffer;
  readonly cpHashA: Buffer;
}

/**
 * An NV write a policy session can authorise, bound to the index's `name` as the caller
 * knows it (computed from the attributes it defined, TPMA_NV_WRITTEN as it is before this
 * write; never read back from the bus): the signature covers that name and the data.
 */
export type NvPolicyWrite = { readonly name: Uint8Array } & (
  { readonly kind: 'increment' } | { readonly kind: 'extend'; readonly data: Uint8Array }
);

/** The TPM 2.0 command a policy-signed write sends. */
export function nvPolicyWriteCommand(write: NvPolicyWrite): 'NV_Increment' | 'NV_Extend' {
  return write.kind === 'increment' ? 'NV_Increment' : 'NV_Extend';
}

/** One write of {@link TpmPort.nvWritesByPolicySigned}: the index and what to write. */
export interface NvPolicySignedWrite {
  readonly index: number;
  readonly write: NvPolicyWrite;
}

/** An index to read back after a write, and how many bytes of it. */
export interface NvReadBack {
  readonly index: number;
  readonly size: number;
}

export interface TpmPort {
  /** TPM2_Startup(CLEAR); a TPM that is already started is fine. */
  startup(): Promise<void>;
  selfTest(full?: boolean): Promise<void>;
  getRandom(bytes: number): Promise<Buffer>;
  readClock(): Promise<TimeInfo>;

  /** Reads every selected PCR as one consistent snapshot (same update counter). */
  pcrRead(selection: readonly PcrBankSelection[]): Promise<PcrRead>;
  pcrExtend(
    pcr: number,
    digests: readonly { hash: HashAlgName; digest: Uint8Array }[],
  ): Promise<void>;

  /** `template` is a marshalled TPMT_PUBLIC (e.g. marshalTpmtPublic(ekTemplate(...))). */
  createPrimary(
    hierarchy: Hierarchy,
    template: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array; userAuth?: Uint8Array },
  ): Promise<PrimaryObject>;
  create(
    parent: number,
    template: Uint8Array,
    options?: { parentAuth?: TpmAuth; userAuth?: Uint8Array },
  ): Promise<CreatedObject>;
  load(
    parent: number,
    key: CreatedObject,
    options?: { parentAuth?: TpmAuth },
  ): Promise<LoadedObject>;
  flush(handle: number): Promise<void>;
  /** Loads, runs `use`, and always flushes the loaded object (swtpm has 3 object slots). */
  withLoaded<T>(
    load: () => Promise<LoadedObject>,
    use: (object: LoadedObject) => Promise<T>,
  ): Promise<T>;
  makePersistent(
    handle: number,
    persistentHandle: number,
    options?: { ownerAuth?: Uint8Array },
  ): Promise<void>;
  evictPersistent(persistentHandle: number, options?: { ownerAuth?: Uint8Array }): Promise<void>;
  readPublic(handle: number): Promise<PublicArea>;

  quote(
    signKey: number,
    selection: readonly PcrBankSelection[],
    qualifyingData: Uint8Array,
    options?: SigningOptions,
  ): Promise<Attestation>;
  certify(
    object: number,
    signKey: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { objectAuth?: TpmAuth },
  ): Promise<Attestation>;
  /**
   * Recovers a credential made for (ekHandle's public key, activateHandle's name);
   * `credentialBlob` is a TPM2B_ID_OBJECT, `encryptedSecret` a TPM2B_ENCRYPTED_SECRET.
   * Unless `ekAuth` says otherwise, the EK is authorised by its empty auth value when its
   * template sets userWithAuth (high-range EKs), else by the EK policy session.
   */
  activateCredential(
    activateHandle: number,
    ekHandle: number,
    credentialBlob: Uint8Array,
    encryptedSecret: Uint8Array,
    options?: { activateAuth?: TpmAuth; ekAuth?: TpmAuth },
  ): Promise<Buffer>;

  nvDefine(
    space: NvSpace,
    options?: { auth?: Uint8Array; hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void>;
  nvUndefine(
    index: number,
    options?: { hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void>;
  /** Reads `size` bytes (default: all of the index after `offset`), in chunks. */
  nvRead(
    index: number,
    options?: { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Buffer>;
  nvWrite(
    index: number,
    data: Uint8Array,
    options?: { offset?: number; auth?: NvAuth },
  ): Promise<void>;
  nvIncrement(index: number, options?: { auth?: NvAuth }): Promise<void>;
  /** The 64-bit value of a counter index. */
  nvReadCounter(index: number, options?: { auth?: NvAuth }): Promise<bigint>;
  nvExtend(index: number, data: Uint8Array, options?: { auth?: NvAuth }): Promise<void>;
  nvReadPublic(index: number): Promise<NvPublic>;
  /**
   * NV_Increment or NV_Extend of an index with TPMA_NV_POLICYWRITE, in a fresh policy
   * session (SHA-256) satisfied by TPM2_PolicySigned with `signer` over its nonceTPM. One
   * signature per write: the session is flushed after the command, whatever happened.
   * With `readAfter`, those indices are read (NV_Read by their own empty auth value, from
   * offset 0) right after the write in the same call, and it resolves with their contents
   * in that order; `undefined` when a read failed (the write happened all the same).
   */
  nvWriteByPolicySigned(
    index: number,
    write: NvPolicyWrite,
    signer: PolicySigner,
    options?: { readAfter?: readonly NvReadBack[] },
  ): Promise<readonly Buffer[] | undefined>;
  /**
   * Several policy-signed NV writes (as {@link nvWriteByPolicySigned}), in order, in one
   * hold of the TPM, at most 3 (swtpm holds 3 sessions), with what does not touch NV done
   * before `before` settles: a policy session is started for each write, `signer` signs
   * every nonce (one call) and the TPM runs each PolicySigned while the caller still waits
   * for `before` (the audit log's store write). No write is sent until `before` resolves;
   * when it rejects, the sessions are flushed, nothing is written and this rejects with the
   * same error. Then the writes go to the TPM one after another in one call, and the first
   * that fails stops the rest (their sessions flushed): the rejection is its error.
   * `landed(i)` is called, once that call has returned, for each write that took effect
   * (all of them, or those before the one that failed); it must not throw. `readAfter`
   * follows the last write.
   */
  nvWritesByPolicySigned(
    writes: readonly NvPolicySignedWrite[],
    signer: PolicySigner,
    options?: {
      readAfter?: readonly NvReadBack[];
      before?: PromiseLike<unknown>;
      landed?: (i: number) => void;
    },
  ): Promise<readonly Buffer[] | undefined>;
  /** TPM2_HierarchyChangeAuth: sets `newAuth` on the hierarchy (empty: clears it). */
  hierarchyChangeAuth(
    hierarchy: 'owner' | 'endorsement',
    newAuth: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array },
  ): Promise<void>;
  nvCertify(
    signKey: number,
    index: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Attestation>;

  /** Idempotent: rejects queued calls with TpmClosedError, waits for the running one. */
  close(): Promise<void>;
  readonly closed: boolean;
}

/**
 * The one implementation of {@link TpmPort.withLoaded} over a port's own `flush`: adapters
 * and decorators delegate to it, so the flush runs through whatever the port wraps.
 */
export async function withLoadedObject<T>(
  flush: (handle: number) => Promise<void>,
  load: () => Promise<LoadedObject>,
  use: (object: LoadedObject) => Promise<T>,
): Promise<T> {
  const object = await load();
  try {
    return await use(object);
  } finally {
    await flush(object.handle);
  }
}
