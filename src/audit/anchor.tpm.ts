/**
 * The audit anchor in the appliance's TPM, through the TPM facade (src/tpm/tpm.port.ts).
 *
 * NV attribute choice (both indices, SHA-256 name algorithm):
 *   ownerWrite | ownerRead | authRead | noDA, and NOT policyWrite, authWrite, policyDelete,
 *   platformCreate, orderly, writeDefine, writeStClear.
 * - Writes (extend, increment) need owner authorisation; the index's own auth value
 *   (empty) cannot write, so anyone may read the anchor (tpm2_nvread) but only the owner
 *   can advance it.
 * - Undefining needs owner authorisation too (TPM2_NV_UndefineSpace with TPM_RH_OWNER;
 *   without policyDelete there is no policy path). platformCreate would make the indices
 *   survive an owner clear, but needs the platform hierarchy, which firmware keeps.
 *   Someone holding the owner authorisation can undefine and redefine: a redefined counter
 *   starts at the highest count the TPM ever had, so it cannot be replayed to an older
 *   value, and a redefinition with other attributes changes the NV name (pinned).
 * - Not orderly: an orderly counter jumps forward after an unorderly shutdown, which the
 *   start-up check would read as tampering; every write goes to NV, so the NV write rate
 *   is bounded by the log's configuration instead.
 * - Provisioning writes both once (extend of the empty root, one increment), so
 *   TPMA_NV_WRITTEN is set and the names are final before they are pinned.
 *
 * With a write key (the appliance's, always; see anchor-policy.ts) the indices are defined
 * instead with policyWrite | ownerRead | authRead | noDA and authPolicy = PolicySigned(key):
 * no password (owner or index) can write them, only a policy session in which the HSM
 * signed the TPM's nonce. The owner can still undefine them (docs/audit.md "Write
 * policy"). Reads use the index's empty auth value, so the running appliance needs no
 * owner authorisation. Without a write key (tests of the log core) writes take owner auth.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { TpmPort } from '../tpm/tpm.port.js';
import { TPM_RC, TpmError } from '../tpm/errors.js';
import { marshalTpmsNvPublic, nvSpacePublic } from '../tpm/marshal/index.js';
import type { PolicySigner } from '../tpm/tpm.port.js';
import type { AnchorWriteKey } from './anchor-key.port.js';
import { anchorKeyName, anchorPolicySigner, anchorWritePolicy } from './anchor-policy.js';
import type { AnchorState, AuditAnchor, NvCertification } from './anchor.port.js';
import { GENESIS_EXTEND } from './anchor.port.js';
import { AuditRollbackError, AnchorError, AnchorKeyError, AnchorProvisionError } from './errors.js';
import { EMPTY_ROOT } from './merkle.js';
import { NvCertifyCheckError, checkNvCertification } from './nv-certify.js';

/** TPMA_NV bits used here (TPM 2.0 Part 2, 13.4). */
const NV = {
  ownerWrite: 1 << 1,
  policyWrite: 1 << 3,
  ownerRead: 1 << 17,
  authRead: 1 << 18,
  noDA: 1 << 25,
  written: 1 << 29,
} as const;
const NT_COUNTER = 0x1;
const NT_EXTEND = 0x4;
const NT_SHIFT = 4;

/** TPM_RC_YIELDED and TPM_RC_TESTING: warnings after which the command did not run. */
const RC_YIELDED = 0x908;
const RC_TESTING = 0x90a;
const RETRYABLE = [TPM_RC.NV_RATE, TPM_RC.RETRY, RC_YIELDED, RC_TESTING];

export const ANCHOR_NV_ATTRIBUTES = NV.ownerWrite | NV.ownerRead | NV.authRead | NV.noDA;
/** The appliance's indices: written only through the write policy (anchor-policy.ts). */
export const ANCHOR_POLICY_NV_ATTRIBUTES = NV.policyWrite | NV.ownerRead | NV.authRead | NV.noDA;

export interface TpmAnchorIndices {
  /** NV index handle of the counter, e.g. 0x01500020. */
  readonly counterIndex: number;
  /** NV index handle of the extend index, e.g. 0x01500021. */
  readonly extendIndex: number;
}

export interface TpmAnchorConfig extends TpmAnchorIndices {
  /** NV names pinned at provisioning (hex, nameAlg ‖ digest). */
  readonly pinnedNames: { readonly counter: string; readonly extend: string };
  /**
   * The counter value at provisioning, pinned beside the names (the anchor pin file);
   * absent: never provisioned, and the log refuses with audit_not_provisioned.
   */
  readonly pinnedGenesis?: bigint;
  /**
   * The appliance AK (TPM2B_PUBLIC of the primary made from `akTemplate`), pinned at
   * provisioning. With it every read of the anchor is an NV_Certify with a fresh nonce,
   * checked against this key and the pinned names: an interposer on the TPM bus cannot
   * answer with other values. Without it reads are plain NV_Read (tests of the log core).
   */
  readonly pinnedAkPublic?: Uint8Array;
  /** Owner hierarchy authorisation (empty by default), without a write key. Never logged. */
  readonly ownerAuth?: Uint8Array;
  /**
   * The key that authorises every write (TPM2_PolicySigned); the indices then carry its
   * policy. With `pinnedWritePolicy` (the pin), checkPinned also checks that this is the
   * pinned key.
   */
  readonly writeKey?: AnchorWriteKey;
  /** The pinned authPolicy of the indices (32 bytes). */
  readonly pinnedWritePolicy?: Uint8Array;
  /** Endorsement hierarchy authorisation for the AK that signs NV_Certify. */
  readonly endorsementAuth?: Uint8Array;
  /**
   * The AK that signs NV_Certify, as a marshalled TPMT_PUBLIC template of a restricted
   * signing key created as a primary key in the endorsement hierarchy (deterministic:
   * the same key on every call; created and flushed around each certify).
   */
  readonly akTemplate?: Uint8Array;
}

/** An anchor command's failure as the log takes it: retryable when the TPM did not run it. */
function failure(what: string, err: unknown): Error {
  if (err instanceof AuditRollbackError) return err;
  const retryable = err instanceof TpmError && RETRYABLE.some((rc) => err.is(rc));
  return new AnchorError(`${what} failed`, retryable, { cause: err });
}

function space(index: number, type: number, dataSize: number, authPolicy?: Uint8Array) {
  return {
    index,
    nameAlg: 'sha256' as const,
    attributes:
      (authPolicy === undefined ? ANCHOR_NV_ATTRIBUTES : ANCHOR_POLICY_NV_ATTRIBUTES) |
      (type << NT_SHIFT),
    ...(authPolicy === undefined ? {} : { authPolicy }),
    dataSize,
  };
}

function nvName(s: ReturnType<typeof space>, written: boolean): string {
  const pub = marshalTpmsNvPublic(
    nvSpacePublic({ ...s, attributes: written ? s.attributes | NV.written : s.attributes }),
  );
  return '000b' + createHash('sha256').update(pub).digest('hex');
}

/**
 * The NV name each anchor index has once provisioned (written), from our attribute choice
 * and the write policy (when given): SHA-256 nameAlg (0x000b) ‖ SHA-256(TPMS_NV_PUBLIC).
 * Lets an operator check pinned names without the TPM.
 */
export function expectedAnchorNames(
  indices: TpmAnchorIndices,
  writePolicy?: Uint8Array,
): {
  counter: string;
  extend: string;
} {
  return {
    counter: nvName(space(indices.counterIndex, NT_COUNTER, 8, writePolicy), true),
    extend: nvName(space(indices.extendIndex, NT_EXTEND, 32, writePolicy), true),
  };
}

/** The write key as the pin records it: its TPM name and the indices' policy (hex). */
export interface PinnedWriteKey {
  readonly name: string;
  readonly policy: string;
}

/** What the pin records of a write key with this public point. */
export function pinnedWriteKey(point: Uint8Array): PinnedWriteKey {
  return {
    name: anchorKeyName(point).toString('hex'),
    policy: anchorWritePolicy(point).toString('hex'),
  };
}

/** What provisioning pins in operator configuration (the anchor pin file). */
export interface AnchorPin {
  readonly names: { readonly counter: string; readonly extend: string };
  /** The counter right after provisioning: the first batch is anchored at genesis + 1. */
  readonly genesisCounter: bigint;
  /** The key whose policy the indices carry (absent: owner-written test anchors). */
  readonly writeKey?: PinnedWriteKey;
}

/** Provisioning's TPM steps, in order; each is skipped when a resumed run finds it done. */
export const ANCHOR_PROVISION_STEPS = [
  'define_counter',
  'define_extend',
  'extend_genesis',
  'increment_counter',
] as const;
export type AnchorProvisionStep = (typeof ANCHOR_PROVISION_STEPS)[number];

/**
 * Provisioning (once per appliance, with owner authorisation): define both indices, write
 * each once, and return what to pin. Resumes a run that stopped after any step (crash,
 * power loss): an index already defined with our attributes is kept, a step already done
 * is skipped. It never adopts an index with other attributes or an extend index that has
 * recorded a batch. `afterStep` runs after each step it performed (tests kill there).
 */
export async function provisionTpmAnchor(
  tpm: TpmPort,
  indices: TpmAnchorIndices,
  options: {
    ownerAuth?: Uint8Array;
    /** The appliance's: every write then needs its signature (anchor-policy.ts). */
    writeKey?: AnchorWriteKey;
    afterStep?: (step: AnchorProvisionStep) => Promise<void> | void;
  } = {},
): Promise<AnchorPin> {
  const hierarchyAuth = options.ownerAuth ?? new Uint8Array(0);
  const done = async (step: AnchorProvisionStep): Promise<void> => {
    await options.afterStep?.(step);
  };
  const key = options.writeKey;
  const point = key === undefined ? undefined : await key.publicPoint();
  const policy = point === undefined ? undefined : anchorWritePolicy(point);
  const signer =
    key === undefined || point === undefined ? undefined : anchorPolicySigner(key, point);
  // Reads by the index's empty auth value with a write key (the owner's may be set).
  const auth =
    signer === undefined
      ? { by: 'owner' as const, value: hierarchyAuth }
      : { by: 'index' as const };
  const counterSpace = space(indices.counterIndex, NT_COUNTER, 8, policy);
  const extendSpace = space(indices.extendIndex, NT_EXTEND, 32, policy);
  const legacy = {
    [indices.counterIndex]: nvName(space(indices.counterIndex, NT_COUNTER, 8), true),
    [indices.extendIndex]: nvName(space(indices.extendIndex, NT_EXTEND, 32), true),
  };
  /** 'absent', 'defined' (not written) or 'written'; anything else is not ours. */
  const stateOf = async (s: typeof counterSpace): Promise<'absent' | 'defined' | 'written'> => {
    let found: string;
    try {
      found = (await tpm.nvReadPublic(s.index)).name.toString('hex');
    } catch (err) {
      if (err instanceof TpmError && err.is(TPM_RC.HANDLE)) return 'absent';
      throw err;
    }
    if (found === nvName(s, true)) return 'written';
    if (found === nvName(s, false)) return 'defined';
    if (policy !== undefined && found === legacy[s.index]) {
      throw new AnchorProvisionError(
        'anchor_owner_written',
        `NV index 0x${s.index.toString(16)} is an audit anchor index from before write policies (owner-written): re-provision (docs/audit.md "Migration")`,
        s.index,
      );
    }
    throw new AnchorProvisionError(
      'nv_index_foreign',
      `NV index 0x${s.index.toString(16)} exists with other attributes (name ${found}): not an audit anchor index; pick other indices or remove it`,
      s.index,
    );
  };
  let counter = await stateOf(counterSpace);
  let extend = await stateOf(extendSpace);
  if (counter === 'absent') {
    await tpm.nvDefine(counterSpace, { hierarchy: 'owner', hierarchyAuth });
    counter = 'defined';
    await done('define_counter');
  }
  if (extend === 'absent') {
    await tpm.nvDefine(extendSpace, { hierarchy: 'owner', hierarchyAuth });
    extend = 'defined';
    await done('define_extend');
  }
  if (extend === 'defined') {
    await (signer === undefined
      ? tpm.nvExtend(indices.extendIndex, EMPTY_ROOT, { auth })
      : tpm.nvWriteByPolicySigned(
          indices.extendIndex,
          // The first write: the name without TPMA_NV_WRITTEN, computed, not read back.
          {
            kind: 'extend',
            data: EMPTY_ROOT,
            name: Buffer.from(nvName(extendSpace, false), 'hex'),
          },
          signer,
        ));
    await done('extend_genesis');
  } else if (!(await tpm.nvRead(indices.extendIndex, { auth })).equals(GENESIS_EXTEND)) {
    throw new AnchorProvisionError(
      'anchor_in_use',
      `the extend index 0x${indices.extendIndex.toString(16)} has recorded batches: provisioning does not adopt a used anchor (restore its pin, or undefine both indices to start a new one)`,
      indices.extendIndex,
    );
  }
  if (counter === 'defined') {
    await (signer === undefined
      ? tpm.nvIncrement(indices.counterIndex, { auth })
      : tpm.nvWriteByPolicySigned(
          indices.counterIndex,
          { kind: 'increment', name: Buffer.from(nvName(counterSpace, false), 'hex') },
          signer,
        ));
    await done('increment_counter');
  }
  return {
    names: {
      counter: (await tpm.nvReadPublic(indices.counterIndex)).name.toString('hex'),
      extend: (await tpm.nvReadPublic(indices.extendIndex)).name.toString('hex'),
    },
    genesisCounter: await tpm.nvReadCounter(indices.counterIndex, { auth }),
    ...(point === undefined ? {} : { writeKey: pinnedWriteKey(point) }),
  };
}

export class TpmAuditAnchor implements AuditAnchor {
  readonly #auth;
  #signer: Promise<PolicySigner> | undefined;
  /**
   * Both indices as read back in the same TPM call as the last policy-written increment
   * (nvWriteByPolicySigned's readAfter), for the readAfterWrite() that follows it; any
   * other anchor call forgets it.
   */
  #afterIncrement: AnchorState | undefined;
  readonly genesis: bigint | undefined;
  readonly pinnedNames: { readonly counter: string; readonly extend: string };

  readonly #tpm: TpmPort;
  readonly #config: TpmAnchorConfig;

  constructor(tpm: TpmPort, config: TpmAnchorConfig) {
    this.#tpm = tpm;
    this.#config = config;
    // With a write key the owner's auth is not needed: reads use the index's (empty) one.
    this.#auth =
      config.writeKey === undefined
        ? { by: 'owner' as const, value: Buffer.from(config.ownerAuth ?? new Uint8Array(0)) }
        : { by: 'index' as const };
    this.genesis = config.pinnedGenesis;
    this.pinnedNames = config.pinnedNames;
  }

  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw failure(what, err);
    }
  }

  checkPinned(): Promise<void> {
    return this.#run('NV_ReadPublic', async () => {
      const wanted = [
        ['counter', this.#config.counterIndex, this.#config.pinnedNames.counter],
        ['extend', this.#config.extendIndex, this.#config.pinnedNames.extend],
      ] as const;
      for (const [which, index, pinned] of wanted) {
        let found: string;
        try {
          found = (await this.#tpm.nvReadPublic(index)).name.toString('hex');
        } catch (err) {
          // An anchor index that does not exist was undefined: tampering, not an outage.
          if (err instanceof TpmError && err.is(TPM_RC.HANDLE)) {
            throw new AuditRollbackError(
              `the audit ${which} NV index 0x${index.toString(16)} is not defined`,
              {
                details: { index: `0x${index.toString(16)}`, expected: pinned, found: null },
              },
            );
          }
          throw err;
        }
        if (found !== pinned.toLowerCase()) {
          throw new AuditRollbackError(
            `the audit ${which} NV index 0x${index.toString(16)} has NV name ${found}, not the pinned ${pinned}: it was redefined`,
            { details: { index: `0x${index.toString(16)}`, expected: pinned, found } },
          );
        }
      }
      await this.#checkWriteKey();
    });
  }

  /**
   * The key store's write key is the one whose policy the pin records: another key could
   * not write the indices, and signing with it would only fail later, at the first batch.
   */
  async #checkWriteKey(): Promise<void> {
    const { writeKey, pinnedWritePolicy } = this.#config;
    if (writeKey === undefined || pinnedWritePolicy === undefined) return;
    let point: Buffer;
    try {
      point = await writeKey.publicPoint();
    } catch (err) {
      if (!(err instanceof AnchorKeyError)) throw err;
      throw new AuditRollbackError(err.message, { details: { reason: err.reason } });
    }
    const policy = anchorWritePolicy(point);
    if (!policy.equals(Buffer.from(pinnedWritePolicy))) {
      throw new AuditRollbackError(
        `the key store's anchor write key (name ${anchorKeyName(point).toString('hex')}) is not the pinned one: its policy ${policy.toString('hex')} is not the pinned ${Buffer.from(pinnedWritePolicy).toString('hex')}`,
        { details: { reason: 'anchor_key_mismatch' } },
      );
    }
  }

  /** The write key as the TPM port takes it, made once. */
  #policySigner(key: AnchorWriteKey): Promise<PolicySigner> {
    this.#signer ??= key.publicPoint().then(
      (point) => anchorPolicySigner(key, point),
      (err: unknown) => {
        this.#signer = undefined;
        throw err;
      },
    );
    return this.#signer;
  }

  read(): Promise<AnchorState> {
    this.#afterIncrement = undefined;
    const ak = this.#config.pinnedAkPublic;
    if (ak !== undefined) return this.#certifiedRead(Buffer.from(ak));
    return this.readAfterWrite();
  }

  /**
   * The read-after-write: after a policy-written increment, what that same TPM call read
   * back (no round trip of its own); otherwise NV_Read of both indices.
   */
  readAfterWrite(): Promise<AnchorState> {
    const read = this.#afterIncrement;
    this.#afterIncrement = undefined;
    if (read !== undefined) return Promise.resolve(read);
    return this.#run('NV_Read', async () => {
      const counter = await this.#tpm.nvReadCounter(this.#config.counterIndex, {
        auth: this.#auth,
      });
      const extendValue = await this.#tpm.nvRead(this.#config.extendIndex, { auth: this.#auth });
      return { counter, extendValue };
    });
  }

  /** The anchor as the TPM itself states it: NV_Certify, fresh nonce, pinned AK and names. */
  async #certifiedRead(akPublic: Buffer): Promise<AnchorState> {
    const nonce = randomBytes(32);
    const certs = await this.certify(nonce);
    const values: Partial<Record<'counter' | 'extend', Buffer>> = {};
    for (const c of certs) {
      try {
        values[c.index] = checkNvCertification(c.attest, c.signature, {
          akPublic,
          nonce,
          name: this.#config.pinnedNames[c.index],
          size: c.index === 'counter' ? 8 : 32,
        });
      } catch (err) {
        if (!(err instanceof NvCertifyCheckError)) throw err;
        // Not an outage: something between us and the TPM answered in its place.
        throw new AuditRollbackError(
          `the TPM's certification of the audit ${c.index} index does not verify (${err.message}): the anchor read was not answered by this TPM`,
          { details: { reason: 'anchor_read_unverified', index: c.index, problem: err.message } },
        );
      }
    }
    const { counter, extend } = values;
    if (counter === undefined || extend === undefined) {
      throw new AnchorError('NV_Certify did not certify both indices', false);
    }
    return { counter: counter.readBigUInt64BE(0), extendValue: extend };
  }

  extend(data: Buffer): Promise<void> {
    const key = this.#config.writeKey;
    this.#afterIncrement = undefined;
    return this.#run('NV_Extend', async () => {
      if (key === undefined) {
        await this.#tpm.nvExtend(this.#config.extendIndex, data, { auth: this.#auth });
        return;
      }
      await this.#tpm.nvWriteByPolicySigned(
        this.#config.extendIndex,
        // Bound to the pinned (written) name: a write lands on the pinned index or fails.
        { kind: 'extend', data, name: Buffer.from(this.#config.pinnedNames.extend, 'hex') },
        await this.#policySigner(key),
      );
    });
  }

  increment(): Promise<void> {
    const key = this.#config.writeKey;
    this.#afterIncrement = undefined;
    return this.#run('NV_Increment', async () => {
      if (key === undefined) {
        await this.#tpm.nvIncrement(this.#config.counterIndex, { auth: this.#auth });
        return;
      }
      const reads = await this.#tpm.nvWriteByPolicySigned(
        this.#config.counterIndex,
        { kind: 'increment', name: Buffer.from(this.#config.pinnedNames.counter, 'hex') },
        await this.#policySigner(key),
        {
          readAfter: [
            { index: this.#config.counterIndex, size: 8 },
            { index: this.#config.extendIndex, size: 32 },
          ],
        },
      );
      const [counter, extendValue] = reads ?? [];
      // A read that failed after the write: readAfterWrite() reads on its own.
      if (counter?.length !== 8 || extendValue?.length !== 32) return;
      this.#afterIncrement = { counter: counter.readBigUInt64BE(0), extendValue };
    });
  }

  async writeBatch(
    root: Buffer,
    stored: Promise<void>,
    landed: (write: 'extend' | 'increment') => void,
  ): Promise<void> {
    const key = this.#config.writeKey;
    this.#afterIncrement = undefined;
    if (key === undefined) {
      // Owner-written indices (tests of the log core): nothing to prepare.
      await stored;
      await this.extend(root);
      landed('extend');
      await this.increment();
      landed('increment');
      return;
    }
    const { counterIndex, extendIndex, pinnedNames } = this.#config;
    const writes = ['extend', 'increment'] as const;
    let done = 0;
    try {
      const reads = await this.#tpm.nvWritesByPolicySigned(
        [
          // Bound to the pinned (written) names: a write lands on the pinned index or fails.
          {
            index: extendIndex,
            write: { kind: 'extend', data: root, name: Buffer.from(pinnedNames.extend, 'hex') },
          },
          {
            index: counterIndex,
            write: { kind: 'increment', name: Buffer.from(pinnedNames.counter, 'hex') },
          },
        ],
        await this.#policySigner(key),
        {
          before: stored,
          readAfter: [
            { index: counterIndex, size: 8 },
            { index: extendIndex, size: 32 },
          ],
          landed: (i) => {
            // The port counts within the list above; any other i is not a write of ours.
            const write = writes[i];
            if (write === undefined) return;
            done = i + 1;
            landed(write);
          },
        },
      );
      const [counter, extendValue] = reads ?? [];
      // A read that failed after the writes: readAfterWrite() reads on its own.
      if (counter?.length === 8 && extendValue?.length === 32) {
        this.#afterIncrement = { counter: counter.readBigUInt64BE(0), extendValue };
      }
    } catch (err) {
      // The store's own failure, as it is: nothing was written.
      const store = await stored.then(
        () => undefined,
        (error: unknown) => ({ error }),
      );
      if (store !== undefined) throw store.error;
      throw failure(done === 0 ? 'NV_Extend' : 'NV_Increment', err);
    }
  }

  #withAk<T>(use: (handle: number, publicArea: Buffer) => Promise<T>): Promise<T> {
    const template = this.#config.akTemplate;
    if (template === undefined) {
      return Promise.reject(new AnchorError('no AK configured for NV_Certify', false));
    }
    let publicArea: Buffer = Buffer.alloc(0);
    return this.#tpm.withLoaded(
      async () => {
        const primary = await this.#tpm.createPrimary('endorsement', template, {
          hierarchyAuth: this.#config.endorsementAuth ?? new Uint8Array(0),
        });
        publicArea = primary.public;
        return primary;
      },
      (ak) => use(ak.handle, publicArea),
    );
  }

  certify(qualifyingData: Buffer): Promise<NvCertification[]> {
    return this.#run('NV_Certify', () =>
      this.#withAk(async (ak) => {
        const out: NvCertification[] = [];
        const indices = [
          ['counter', this.#config.counterIndex],
          ['extend', this.#config.extendIndex],
        ] as const;
        for (const [which, nvIndex] of indices) {
          const a = await this.#tpm.nvCertify(ak, nvIndex, qualifyingData, { auth: this.#auth });
          out.push({ index: which, nvIndex, attest: a.attest, signature: a.signature });
        }
        return out;
      }),
    );
  }

  akPublic(): Promise<Buffer | undefined> {
    if (this.#config.akTemplate === undefined) return Promise.resolve(undefined);
    return this.#run('CreatePrimary', () => this.#withAk((_h, pub) => Promise.resolve(pub)));
  }
}
