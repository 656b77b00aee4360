/**
 * The TPM adapter over our tpm2-tss addon (native/): the only file that loads it. Calls go
 * through a SerialQueue (one ESYS context, one command at a time); inputs are copied when
 * the call is made; addon rejections become TpmError / TpmUnavailableError. A lost
 * connection (TCTI failure) is re-opened on the next call.
 */
import { createRequire } from 'node:module';
import { SerialQueue } from './queue.js';
import {
  TPM_RC,
  TpmArgumentError,
  TpmClosedError,
  TpmError,
  TpmResponseError,
  fromNative,
} from './errors.js';
import type {
  Attestation,
  CreatedObject,
  Hierarchy,
  LoadedObject,
  NvAuth,
  NvPolicySignedWrite,
  NvPolicyWrite,
  NvReadBack,
  NvPublic,
  PcrRead,
  PcrValue,
  PolicySigner,
  PrimaryObject,
  PublicArea,
  SigningOptions,
  TpmAuth,
  TpmPort,
} from './tpm.port.js';
import { TPM_HANDLE, nvPolicyWriteCommand, withLoadedObject } from './tpm.port.js';
import {
  MAX_TPMT_PUBLIC_SIZE,
  SIG_SCHEME_NULL,
  TPM2B,
  TpmParseError,
  hashInfoByName,
  isHashAlgName,
  marshalTpm2b,
  marshalTpm2bNvPublic,
  marshalTpmlDigestValues,
  marshalTpmlPcrSelection,
  nvSpacePublic,
  nvWriteCpHash,
  pcrListToSelection,
  pcrSelectionToList,
  unmarshalTpm2b,
  unmarshalTpm2bNvPublic,
  unmarshalTpm2bPublic,
  unmarshalTpmlDigest,
  unmarshalTpmlPcrSelection,
  unmarshalTpmsTimeInfo,
  type HashAlgName,
  type NvSpace,
  type PcrBankSelection,
  type TimeInfo,
  type Tpm2bKind,
} from './marshal/index.js';

/** The addon's surface (native/src/*.cc); structures are marshalled TPM bytes. */
interface NativeAuth {
  value?: Uint8Array;
  ekPolicy?: boolean;
  endorsementAuth?: Uint8Array;
}
interface NativeContext {
  open(tcti: string): Promise<void>;
  close(): void;
  isOpen(): boolean;
}
interface NativeAddon {
  Context: new () => NativeContext;
  startup(c: NativeContext, clear: boolean): Promise<void>;
  selfTest(c: NativeContext, full: boolean): Promise<void>;
  getRandom(c: NativeContext, n: number): Promise<Buffer>;
  readClock(c: NativeContext): Promise<Buffer>;
  pcrRead(
    c: NativeContext,
    sel: Uint8Array,
  ): Promise<{ updateCounter: number; selection: Buffer; digests: Buffer }>;
  pcrExtend(c: NativeContext, pcr: number, digests: Uint8Array): Promise<void>;
  createPrimary(
    c: NativeContext,
    hierarchy: number,
    hierarchyAuth: NativeAuth,
    template: Uint8Array,
    userAuth: Uint8Array,
  ): Promise<{ handle: number; public: Buffer; name: Buffer }>;
  create(
    c: NativeContext,
    parent: number,
    parentAuth: NativeAuth,
    template: Uint8Array,
    userAuth: Uint8Array,
  ): Promise<{ private: Buffer; public: Buffer }>;
  load(
    c: NativeContext,
    parent: number,
    parentAuth: NativeAuth,
    priv: Uint8Array,
    pub: Uint8Array,
  ): Promise<{ handle: number; name: Buffer }>;
  flush(c: NativeContext, handle: number): Promise<void>;
  evictControl(
    c: NativeContext,
    ownerAuth: NativeAuth,
    object: number,
    persistent: number,
  ): Promise<void>;
  readPublic(
    c: NativeContext,
    handle: number,
  ): Promise<{ public: Buffer; name: Buffer; qualifiedName: Buffer }>;
  quote(
    c: NativeContext,
    signKey: number,
    signAuth: NativeAuth,
    scheme: Uint8Array,
    qualifying: Uint8Array,
    selection: Uint8Array,
  ): Promise<{ attest: Buffer; signature: Buffer }>;
  certify(
    c: NativeContext,
    object: number,
    objectAuth: NativeAuth,
    signKey: number,
    signAuth: NativeAuth,
    scheme: Uint8Array,
    qualifying: Uint8Array,
  ): Promise<{ attest: Buffer; signature: Buffer }>;
  nvCertify(
    c: NativeContext,
    signKey: number,
    signAuth: NativeAuth,
    authHandle: number,
    auth: NativeAuth,
    index: number,
    scheme: Uint8Array,
    qualifying: Uint8Array,
    size: number,
    offset: number,
  ): Promise<{ attest: Buffer; signature: Buffer }>;
  activateCredential(
    c: NativeContext,
    activate: number,
    activateAuth: NativeAuth,
    key: number,
    keyAuth: NativeAuth,
    blob: Uint8Array,
    secret: Uint8Array,
  ): Promise<Buffer>;
  nvDefine(
    c: NativeContext,
    authHandle: number,
    hierAuth: NativeAuth,
    indexAuth: Uint8Array,
    pub: Uint8Array,
  ): Promise<void>;
  nvUndefine(
    c: NativeContext,
    authHandle: number,
    hierAuth: NativeAuth,
    index: number,
  ): Promise<void>;
  nvRead(
    c: NativeContext,
    authHandle: number,
    auth: NativeAuth,
    index: number,
    size: number,
    offset: number,
  ): Promise<Buffer>;
  nvWrite(
    c: NativeContext,
    authHandle: number,
    auth: NativeAuth,
    index: number,
    data: Uint8Array,
    offset: number,
  ): Promise<void>;
  nvIncrement(c: NativeContext, authHandle: number, auth: NativeAuth, index: number): Promise<void>;
  nvExtend(
    c: NativeContext,
    authHandle: number,
    auth: NativeAuth,
    index: number,
    data: Uint8Array,
  ): Promise<void>;
  nvReadPublic(c: NativeContext, index: number): Promise<{ public: Buffer; name: Buffer }>;
  /** Through SAPI: a session is the TPM handle of a policy session. */
  policySessionsStart(
    c: NativeContext,
    count: number,
  ): Promise<{ session: number; nonceTpm: Buffer }[]>;
  policySessionFlush(c: NativeContext, session: number): Promise<void>;
  /** The sessions stay the caller's, whatever happens. */
  policySigned(
    c: NativeContext,
    keyPublic: Uint8Array,
    sessions: number[],
    nonces: Uint8Array[],
    signatures: Uint8Array[],
    cpHashes: Uint8Array[],
  ): Promise<void>;
  /**
   * In order, stopping at the first that fails: its rejection carries `landed` (the writes
   * before it); the sessions from there on are not spent, and the caller flushes them.
   */
  nvPolicyWrites(
    c: NativeContext,
    sessions: number[],
    kinds: (0 | 1)[],
    indices: number[],
    data: Uint8Array[],
    readAfter: number[],
  ): Promise<Buffer[] | null>;
  hierarchyChangeAuth(
    c: NativeContext,
    hierarchy: number,
    auth: NativeAuth,
    newAuth: Uint8Array,
  ): Promise<void>;
}

// tpm2-tss logs warnings to stderr by default (e.g. on every expected NV_ReadPublic miss);
// errors reach callers as TpmError instead. An operator can still set TSS2_LOG.
process.env.TSS2_LOG ??= 'all+none';
/** The addon, from src/tpm (tests, tsx) or from dist/src/tpm (the built appliance). */
function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const candidates = [
    '../../native/build/Release/grantor_tpm.node',
    '../../../native/build/Release/grantor_tpm.node',
  ];
  for (const path of candidates) {
    try {
      return require(path) as NativeAddon;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  throw new Error('the TPM addon is not built (npm run build:native)');
}
const addon = loadAddon();

/** NV reads and writes go in chunks no TPM refuses (MAX_NV_BUFFER_SIZE is at least 512). */
const NV_CHUNK = 512;
const PCR_READ_ATTEMPTS = 5;

const HIERARCHIES: Readonly<Record<Hierarchy, number>> = {
  owner: TPM_HANDLE.OWNER,
  endorsement: TPM_HANDLE.ENDORSEMENT,
  platform: TPM_HANDLE.PLATFORM,
  null: TPM_HANDLE.NULL,
};

const copy = (b: Uint8Array | undefined): Buffer => Buffer.from(b ?? new Uint8Array(0));

function nativeAuth(a: TpmAuth | undefined): NativeAuth {
  const out: NativeAuth = { value: copy(a?.value), endorsementAuth: copy(a?.endorsementAuth) };
  if (a?.ekPolicy === true) out.ekPolicy = true;
  return out;
}

function nvAuthHandle(index: number, auth: NvAuth | undefined): number {
  return auth?.by === 'owner' ? TPM_HANDLE.OWNER : index;
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new TpmArgumentError(`${name} must be a 32-bit handle`);
}

/** The selection's banks are ones the facade reads, each once, with PCRs 0-31. */
function checkSelection(
  selection: readonly PcrBankSelection[],
): { bank: HashAlgName; pcrs: readonly number[] }[] {
  const seen = new Set<string>();
  return selection.map(({ bank, pcrs }) => {
    if (!isHashAlgName(bank)) throw new TpmArgumentError(`unknown PCR bank ${bank}`);
    if (seen.has(bank)) throw new TpmArgumentError(`PCR bank ${bank} listed twice`);
    seen.add(bank);
    for (const p of pcrs) {
      if (!Number.isInteger(p) || p < 0 || p > 31)
        throw new TpmArgumentError(`PCR index ${p} out of range`);
    }
    return { bank, pcrs };
  });
}

/** A policy-signed write as the addon takes it. */
interface PlannedPolicyWrite {
  readonly index: number;
  readonly kind: 0 | 1;
  readonly command: 'NV_Increment' | 'NV_Extend';
  readonly data: Buffer;
  readonly cpHash: Buffer;
}

function planPolicyWrite({ index, write }: NvPolicySignedWrite): PlannedPolicyWrite {
  checkU32('index', index);
  const data = write.kind === 'extend' ? copy(write.data) : Buffer.alloc(0);
  if (data.length > 1024) throw new TpmArgumentError('nvExtend: at most 1024 bytes');
  const cpHash = nvWriteCpHash(
    copy(write.name),
    write.kind === 'extend' ? { kind: 'extend', data } : { kind: 'increment' },
  );
  return {
    index,
    kind: write.kind === 'increment' ? 0 : 1,
    command: nvPolicyWriteCommand(write),
    data,
    cpHash,
  };
}

/** At most this many policy writes in one call (native/src/policy.cc kMaxWrites). */
const MAX_POLICY_WRITES = 3;

/** How many writes of an `nvPolicyWrites` call landed before the one that failed. */
function landedBefore(e: unknown): number {
  const n = typeof e === 'object' && e !== null ? (e as { landed?: unknown }).landed : undefined;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : 0;
}

type Settled = { readonly failed: false } | { readonly failed: true; readonly error: unknown };

/** How `p` settles, as a promise that always resolves (so it is never left unhandled). */
function settle(p: PromiseLike<unknown>): Promise<Settled> {
  return Promise.resolve(p).then(
    () => ({ failed: false }),
    (error: unknown) => ({ failed: true, error }),
  );
}

/**
 * Read a structure the TPM answered: a malformed one is the TPM's failure (`tpm_error`,
 * TpmResponseError), not a bad request.
 */
function fromTpm<T>(structure: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof TpmParseError)
      throw new TpmResponseError(`${structure}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** Bounded by its u16 size only here; readers of TPMS_ATTEST check the contents. */
const TPM2B_ATTEST: Tpm2bKind = { name: 'TPM2B_ATTEST', max: 0xffff };
/** A TPMT_PUBLIC template as CreatePrimary and Create take it. */
const TPM2B_TEMPLATE: Tpm2bKind = { name: 'TPM2B_TEMPLATE', max: MAX_TPMT_PUBLIC_SIZE };

function unwrap(kind: Tpm2bKind, bytes: Uint8Array): Buffer {
  return fromTpm(kind.name, () => unmarshalTpm2b(kind, bytes));
}

function marshalSelection(selection: readonly PcrBankSelection[]): Buffer {
  return marshalTpmlPcrSelection(pcrListToSelection(selection));
}

export class NativeTpm implements TpmPort {
  readonly #tcti: string;
  readonly #queue = new SerialQueue(() => new TpmClosedError());
  #ctx: NativeContext;
  #broken = false;
  /** Transient objects created or loaded through this adapter and not yet flushed. */
  readonly #held = new Set<number>();

  private constructor(tcti: string, ctx: NativeContext) {
    this.#tcti = tcti;
    this.#ctx = ctx;
  }

  /** Connects to the TPM named by a tpm2-tss TCTI string (`swtpm:host=..,port=..`, `device:/dev/tpmrm0`). */
  static async open(tcti: string): Promise<NativeTpm> {
    const ctx = new addon.Context();
    try {
      await ctx.open(tcti);
    } catch (e) {
      throw fromNative(e, 'open');
    }
    return new NativeTpm(tcti, ctx);
  }

  /**
   * An adapter that connects on its first call (and again after a connection failure), so
   * a service can start while the TPM is down and report it as unavailable.
   */
  static lazy(tcti: string): NativeTpm {
    const tpm = new NativeTpm(tcti, new addon.Context());
    tpm.#broken = true;
    return tpm;
  }

  get closed(): boolean {
    return this.#queue.closed;
  }

  /** Runs one addon call in its own queue slot. */
  #call<T>(command: string, fn: (ctx: NativeContext) => Promise<T>): Promise<T> {
    return this.#slot(() => this.#native(command, fn));
  }

  /**
   * One queue slot for `work`. When the TPM answers that its object or session slots are
   * full, `work` runs once more after flushing what is stale: without a resource manager
   * (swtpm, /dev/tpm0) a process killed mid-command leaves its sessions and transient
   * objects in the TPM's few slots, and every command that loads one (CreatePrimary, Load,
   * a policy session) would fail until a TPM restart.
   */
  #slot<T>(work: () => Promise<T>): Promise<T> {
    return this.#queue.run(async () => {
      try {
        return await work();
      } catch (e) {
        if (!(e instanceof TpmError) || ![...SLOTS_FULL].some((rc) => e.is(rc))) throw e;
        await this.#flushStale();
        return work();
      }
    });
  }

  /** One addon call (the caller holds the queue), re-opening a connection that failed. */
  async #native<T>(command: string, fn: (ctx: NativeContext) => Promise<T>): Promise<T> {
    if (this.#broken) await this.#reopen();
    try {
      return await fn(this.#ctx);
    } catch (e) {
      const err = fromNative(e, command);
      if (err.code === 'tpm_unavailable') this.#broken = true;
      throw err;
    }
  }

  async #reopen(): Promise<void> {
    this.#ctx.close();
    const ctx = new addon.Context();
    try {
      await ctx.open(this.#tcti);
    } catch (e) {
      throw fromNative(e, 'open');
    }
    this.#ctx = ctx;
    this.#broken = false;
  }

  close(): Promise<void> {
    return this.#queue.close(() => {
      this.#ctx.close();
    });
  }

  async startup(): Promise<void> {
    await this.#call('Startup', async (c) => {
      try {
        await addon.startup(c, true);
      } catch (e) {
        const err = fromNative(e, 'Startup');
        // TPM_RC_INITIALIZE: already started (by the platform or swtpm's startup-clear).
        if (err instanceof TpmError && err.is(TPM_RC.INITIALIZE)) return;
        throw err;
      }
    });
  }

  async selfTest(full = true): Promise<void> {
    await this.#call('SelfTest', (c) => addon.selfTest(c, full));
  }

  async getRandom(bytes: number): Promise<Buffer> {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 64)
      throw new TpmArgumentError('getRandom: 0..64 bytes');
    const out = await this.#call('GetRandom', (c) => addon.getRandom(c, bytes));
    return unwrap(TPM2B.DIGEST, out);
  }

  async readClock(): Promise<TimeInfo> {
    const out = await this.#call('ReadClock', (c) => addon.readClock(c));
    return fromTpm('TPMS_TIME_INFO', () => unmarshalTpmsTimeInfo(out));
  }

  async pcrRead(selection: readonly PcrBankSelection[]): Promise<PcrRead> {
    const wanted = checkSelection(selection).map((b) => ({
      bank: b.bank,
      pcrs: [...new Set(b.pcrs)].sort((x, y) => x - y),
    }));
    for (let attempt = 0; attempt < PCR_READ_ATTEMPTS; attempt++) {
      const got = new Map<string, Buffer>();
      let counter: number | undefined;
      let consistent = true;
      // PCR_Read answers at most 8 digests per call: ask again for what is missing.
      for (;;) {
        const remaining = wanted
          .map((b) => ({ bank: b.bank, pcrs: b.pcrs.filter((p) => !got.has(`${b.bank}:${p}`)) }))
          .filter((b) => b.pcrs.length > 0);
        if (remaining.length === 0) break;
        const r = await this.#call('PCR_Read', (c) =>
          addon.pcrRead(c, marshalSelection(remaining)),
        );
        if (counter !== undefined && r.updateCounter !== counter) {
          consistent = false;
          break;
        }
        counter = r.updateCounter;
        const digests = fromTpm('TPML_DIGEST', () => unmarshalTpmlDigest(r.digests));
        const answered = fromTpm('TPML_PCR_SELECTION', () =>
          pcrSelectionToList(unmarshalTpmlPcrSelection(r.selection)),
        );
        let i = 0;
        for (const { bank, pcrs } of answered) {
          for (const pcr of pcrs) {
            const d = digests[i++];
            if (d === undefined)
              throw new TpmResponseError('PCR_Read: digests do not match the selection');
            got.set(`${bank}:${pcr}`, d);
          }
        }
        if (i !== digests.length)
          throw new TpmResponseError('PCR_Read: digests do not match the selection');
        if (i === 0) {
          const missing = remaining.map((b) => `${b.bank}:[${b.pcrs.join(',')}]`).join(' ');
          throw new TpmResponseError(`PCR_Read: the TPM does not provide ${missing}`);
        }
      }
      if (!consistent || counter === undefined) continue;
      const values: PcrValue[] = [];
      for (const b of wanted) {
        for (const pcr of b.pcrs) {
          const digest = got.get(`${b.bank}:${pcr}`);
          if (digest === undefined) throw new TpmResponseError('PCR_Read: missing digest');
          values.push({ bank: b.bank, pcr, digest });
        }
      }
      return { updateCounter: counter, values };
    }
    throw new TpmResponseError('PCR_Read: PCRs kept changing while being read');
  }

  async pcrExtend(
    pcr: number,
    digests: readonly { hash: HashAlgName; digest: Uint8Array }[],
  ): Promise<void> {
    if (!Number.isInteger(pcr) || pcr < 0 || pcr > 31)
      throw new TpmArgumentError(`PCR index ${pcr} out of range`);
    for (const d of digests) {
      const size = isHashAlgName(d.hash) ? hashInfoByName(d.hash)?.size : undefined;
      if (d.digest.length !== size) {
        throw new TpmArgumentError(`pcrExtend: a ${d.hash} digest must be ${size ?? '?'} bytes`);
      }
    }
    const values = marshalTpmlDigestValues(digests);
    await this.#call('PCR_Extend', (c) => addon.pcrExtend(c, pcr, values));
  }

  async createPrimary(
    hierarchy: Hierarchy,
    template: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array; userAuth?: Uint8Array },
  ): Promise<PrimaryObject> {
    const tmpl = marshalTpm2b(TPM2B_TEMPLATE, template);
    const hAuth = nativeAuth({ value: copy(options?.hierarchyAuth) });
    const userAuth = copy(options?.userAuth);
    const r = await this.#call('CreatePrimary', (c) =>
      addon.createPrimary(c, HIERARCHIES[hierarchy], hAuth, tmpl, userAuth),
    );
    this.#held.add(r.handle);
    return { handle: r.handle, public: r.public, name: unwrap(TPM2B.NAME, r.name) };
  }

  async create(
    parent: number,
    template: Uint8Array,
    options?: { parentAuth?: TpmAuth; userAuth?: Uint8Array },
  ): Promise<CreatedObject> {
    checkU32('parent', parent);
    const tmpl = marshalTpm2b(TPM2B_TEMPLATE, template);
    const pAuth = nativeAuth(options?.parentAuth);
    const userAuth = copy(options?.userAuth);
    return this.#call('Create', (c) => addon.create(c, parent, pAuth, tmpl, userAuth));
  }

  async load(
    parent: number,
    key: CreatedObject,
    options?: { parentAuth?: TpmAuth },
  ): Promise<LoadedObject> {
    checkU32('parent', parent);
    const priv = copy(key.private);
    const pub = copy(key.public);
    const pAuth = nativeAuth(options?.parentAuth);
    const r = await this.#call('Load', (c) => addon.load(c, parent, pAuth, priv, pub));
    this.#held.add(r.handle);
    return { handle: r.handle, name: unwrap(TPM2B.NAME, r.name) };
  }

  async flush(handle: number): Promise<void> {
    checkU32('handle', handle);
    try {
      await this.#call('FlushContext', (c) => addon.flush(c, handle));
    } finally {
      // The caller has let go of it either way; a sweep may take it if it is still loaded.
      this.#held.delete(handle);
    }
  }

  withLoaded<T>(
    load: () => Promise<LoadedObject>,
    use: (object: LoadedObject) => Promise<T>,
  ): Promise<T> {
    return withLoadedObject((handle) => this.flush(handle), load, use);
  }

  async makePersistent(
    handle: number,
    persistentHandle: number,
    options?: { ownerAuth?: Uint8Array },
  ): Promise<void> {
    checkU32('handle', handle);
    if (persistentHandle >>> 24 !== 0x81)
      throw new TpmArgumentError('persistent handles are 0x81xxxxxx');
    const auth = nativeAuth({ value: copy(options?.ownerAuth) });
    await this.#call('EvictControl', (c) => addon.evictControl(c, auth, handle, persistentHandle));
  }

  async evictPersistent(
    persistentHandle: number,
    options?: { ownerAuth?: Uint8Array },
  ): Promise<void> {
    if (persistentHandle >>> 24 !== 0x81)
      throw new TpmArgumentError('persistent handles are 0x81xxxxxx');
    const auth = nativeAuth({ value: copy(options?.ownerAuth) });
    await this.#call('EvictControl', (c) =>
      addon.evictControl(c, auth, persistentHandle, persistentHandle),
    );
  }

  async readPublic(handle: number): Promise<PublicArea> {
    checkU32('handle', handle);
    const r = await this.#call('ReadPublic', (c) => addon.readPublic(c, handle));
    return {
      public: r.public,
      name: unwrap(TPM2B.NAME, r.name),
      qualifiedName: unwrap(TPM2B.NAME, r.qualifiedName),
    };
  }

  async quote(
    signKey: number,
    selection: readonly PcrBankSelection[],
    qualifyingData: Uint8Array,
    options?: SigningOptions,
  ): Promise<Attestation> {
    checkU32('signKey', signKey);
    const sel = marshalSelection(checkSelection(selection));
    const data = copy(qualifyingData);
    const scheme = copy(options?.scheme ?? SIG_SCHEME_NULL);
    const auth = nativeAuth(options?.signAuth);
    const r = await this.#call('Quote', (c) => addon.quote(c, signKey, auth, scheme, data, sel));
    return { attest: unwrap(TPM2B_ATTEST, r.attest), signature: r.signature };
  }

  async certify(
    object: number,
    signKey: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { objectAuth?: TpmAuth },
  ): Promise<Attestation> {
    checkU32('object', object);
    checkU32('signKey', signKey);
    const data = copy(qualifyingData);
    const scheme = copy(options?.scheme ?? SIG_SCHEME_NULL);
    const oAuth = nativeAuth(options?.objectAuth);
    const sAuth = nativeAuth(options?.signAuth);
    const r = await this.#call('Certify', (c) =>
      addon.certify(c, object, oAuth, signKey, sAuth, scheme, data),
    );
    return { attest: unwrap(TPM2B_ATTEST, r.attest), signature: r.signature };
  }

  async activateCredential(
    activateHandle: number,
    ekHandle: number,
    credentialBlob: Uint8Array,
    encryptedSecret: Uint8Array,
    options?: { activateAuth?: TpmAuth; ekAuth?: TpmAuth },
  ): Promise<Buffer> {
    checkU32('activateHandle', activateHandle);
    checkU32('ekHandle', ekHandle);
    const blob = copy(credentialBlob);
    const secret = copy(encryptedSecret);
    const aAuth = nativeAuth(options?.activateAuth);
    const kAuth = nativeAuth(options?.ekAuth ?? (await this.#ekAuth(ekHandle)));
    const out = await this.#call('ActivateCredential', (c) =>
      addon.activateCredential(c, activateHandle, aAuth, ekHandle, kAuth, blob, secret),
    );
    return unwrap(TPM2B.DIGEST, out);
  }

  /**
   * The default authorisation for an EK: its (empty) auth value when the template sets
   * userWithAuth (the high-range templates, whose PolicyB needs more than PolicySecret),
   * else the EK policy (PolicySecret on the endorsement hierarchy).
   */
  async #ekAuth(ekHandle: number): Promise<TpmAuth> {
    const { public: ek } = await this.readPublic(ekHandle);
    const { objectAttributes } = fromTpm('TPM2B_PUBLIC', () => unmarshalTpm2bPublic(ek));
    return objectAttributes.userWithAuth ? {} : { ekPolicy: true };
  }

  async #nvDataSize(index: number): Promise<number> {
    const { public: pub } = await this.nvReadPublic(index);
    return fromTpm('TPM2B_NV_PUBLIC', () => unmarshalTpm2bNvPublic(pub)).dataSize;
  }

  async nvDefine(
    space: NvSpace,
    options?: { auth?: Uint8Array; hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    if (space.index >>> 24 !== 0x01) throw new TpmArgumentError('NV indices are 0x01xxxxxx');
    if (!isHashAlgName(space.nameAlg))
      throw new TpmArgumentError(`unknown nameAlg ${String(space.nameAlg)}`);
    const pub = marshalTpm2bNvPublic(nvSpacePublic(space));
    const hier = HIERARCHIES[options?.hierarchy ?? 'owner'];
    const hAuth = nativeAuth({ value: copy(options?.hierarchyAuth) });
    const indexAuth = copy(options?.auth);
    await this.#call('NV_DefineSpace', (c) => addon.nvDefine(c, hier, hAuth, indexAuth, pub));
  }

  async nvUndefine(
    index: number,
    options?: { hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    checkU32('index', index);
    const hier = HIERARCHIES[options?.hierarchy ?? 'owner'];
    const hAuth = nativeAuth({ value: copy(options?.hierarchyAuth) });
    await this.#call('NV_UndefineSpace', (c) => addon.nvUndefine(c, hier, hAuth, index));
  }

  async nvRead(
    index: number,
    options?: { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Buffer> {
    checkU32('index', index);
    const offset = options?.offset ?? 0;
    const size = options?.size ?? (await this.#nvDataSize(index)) - offset;
    if (
      !Number.isInteger(size) ||
      !Number.isInteger(offset) ||
      size < 0 ||
      offset < 0 ||
      size + offset > 0xffff
    ) {
      throw new TpmArgumentError('nvRead: size and offset out of range');
    }
    const authHandle = nvAuthHandle(index, options?.auth);
    const auth = nativeAuth({ value: copy(options?.auth?.value) });
    const chunks: Buffer[] = [];
    for (let done = 0; done < size;) {
      const n = Math.min(NV_CHUNK, size - done);
      const at = offset + done;
      const out = await this.#call('NV_Read', (c) =>
        addon.nvRead(c, authHandle, auth, index, n, at),
      );
      chunks.push(unwrap(TPM2B.MAX_NV_BUFFER, out));
      done += n;
    }
    return Buffer.concat(chunks);
  }

  async nvWrite(
    index: number,
    data: Uint8Array,
    options?: { offset?: number; auth?: NvAuth },
  ): Promise<void> {
    checkU32('index', index);
    const bytes = copy(data);
    const offset = options?.offset ?? 0;
    if (!Number.isInteger(offset) || offset < 0 || offset + bytes.length > 0xffff) {
      throw new TpmArgumentError('nvWrite: offset out of range');
    }
    const authHandle = nvAuthHandle(index, options?.auth);
    const auth = nativeAuth({ value: copy(options?.auth?.value) });
    for (let done = 0; done < bytes.length || (done === 0 && bytes.length === 0);) {
      const chunk = bytes.subarray(done, done + NV_CHUNK);
      const at = offset + done;
      await this.#call('NV_Write', (c) => addon.nvWrite(c, authHandle, auth, index, chunk, at));
      done += Math.max(chunk.length, 1);
    }
  }

  async nvIncrement(index: number, options?: { auth?: NvAuth }): Promise<void> {
    checkU32('index', index);
    const authHandle = nvAuthHandle(index, options?.auth);
    const auth = nativeAuth({ value: copy(options?.auth?.value) });
    await this.#call('NV_Increment', (c) => addon.nvIncrement(c, authHandle, auth, index));
  }

  async nvReadCounter(index: number, options?: { auth?: NvAuth }): Promise<bigint> {
    const bytes = await this.nvRead(index, {
      size: 8,
      offset: 0,
      ...(options?.auth ? { auth: options.auth } : {}),
    });
    return bytes.readBigUInt64BE(0);
  }

  async nvExtend(index: number, data: Uint8Array, options?: { auth?: NvAuth }): Promise<void> {
    checkU32('index', index);
    if (data.length > 1024) throw new TpmArgumentError('nvExtend: at most 1024 bytes');
    const bytes = copy(data);
    const authHandle = nvAuthHandle(index, options?.auth);
    const auth = nativeAuth({ value: copy(options?.auth?.value) });
    await this.#call('NV_Extend', (c) => addon.nvExtend(c, authHandle, auth, index, bytes));
  }

  async nvReadPublic(index: number): Promise<NvPublic> {
    checkU32('index', index);
    const r = await this.#call('NV_ReadPublic', (c) => addon.nvReadPublic(c, index));
    return { public: r.public, name: unwrap(TPM2B.NAME, r.name) };
  }

  nvWriteByPolicySigned(
    index: number,
    write: NvPolicyWrite,
    signer: PolicySigner,
    options?: { readAfter?: readonly NvReadBack[] },
  ): Promise<readonly Buffer[] | undefined> {
    return this.nvWritesByPolicySigned([{ index, write }], signer, options);
  }

  async nvWritesByPolicySigned(
    writes: readonly NvPolicySignedWrite[],
    signer: PolicySigner,
    options: {
      readAfter?: readonly NvReadBack[];
      before?: PromiseLike<unknown>;
      landed?: (i: number) => void;
    } = {},
  ): Promise<readonly Buffer[] | undefined> {
    if (writes.length === 0) throw new TpmArgumentError('nvWritesByPolicySigned: no write');
    if (writes.length > MAX_POLICY_WRITES) {
      throw new TpmArgumentError(
        `nvWritesByPolicySigned: at most ${MAX_POLICY_WRITES} writes (one session each)`,
      );
    }
    const readAfter: number[] = [];
    for (const r of options.readAfter ?? []) {
      checkU32('readAfter index', r.index);
      if (!Number.isInteger(r.size) || r.size < 0 || r.size > NV_CHUNK) {
        throw new TpmArgumentError(`nvWritesByPolicySigned: read back at most ${NV_CHUNK} bytes`);
      }
      readAfter.push(r.index, r.size);
    }
    const planned = writes.map(planPolicyWrite);
    const keyPublic = copy(signer.public);
    const before = options.before === undefined ? undefined : settle(options.before);
    // The first write that has not landed: a queue slot run again (slots full) resumes there.
    let next = 0;
    // One queue slot for all of it: the sessions must not interleave with other calls.
    const reads = await this.#slot(async () => {
      const pending = planned.slice(next);
      const sessions = await this.#preparePolicyWrites(pending, signer, keyPublic, before);
      let landed = 0;
      try {
        return await this.#native((pending[0] as PlannedPolicyWrite).command, (c) =>
          addon
            .nvPolicyWrites(
              c,
              sessions,
              pending.map((w) => w.kind),
              pending.map((w) => w.index),
              pending.map((w) => w.data),
              readAfter,
            )
            .then(
              (out) => {
                landed = pending.length;
                return out;
              },
              (e: unknown) => {
                landed = Math.min(landedBefore(e), pending.length);
                throw e;
              },
            ),
        );
      } catch (e) {
        // The failed write's session is still loaded, and the later ones were never used.
        await this.#flushSessions(sessions.slice(landed));
        throw e;
      } finally {
        // A rerun never sends a landed write again.
        for (let i = 0; i < landed; i++) {
          next += 1;
          options.landed?.(next - 1);
        }
      }
    });
    return reads === null ? undefined : reads.map((r) => unwrap(TPM2B.MAX_NV_BUFFER, r));
  }

  /**
   * Readies a policy session for each write, changing no NV index: starts the sessions, has
   * `signer` sign every nonce with its write's cpHash (one call) and runs PolicySigned in
   * each; then waits for `before`. On any failure the sessions are flushed, and `before`'s
   * rejection, when it rejects, is the one passed on.
   */
  async #preparePolicyWrites(
    writes: readonly PlannedPolicyWrite[],
    signer: PolicySigner,
    keyPublic: Buffer,
    before: Promise<Settled> | undefined,
  ): Promise<number[]> {
    let sessions: number[] = [];
    let failure: { error: unknown } | undefined;
    try {
      const started = await this.#native('StartAuthSession', (c) =>
        addon.policySessionsStart(c, writes.length),
      );
      sessions = started.map((s) => s.session);
      const signatures = (
        await signer.sign(
          writes.map((w, i) => ({
            nonceTpm: (started[i] as { nonceTpm: Buffer }).nonceTpm,
            cpHashA: w.cpHash,
          })),
        )
      ).map(copy);
      if (signatures.length !== writes.length) {
        throw new TpmArgumentError('nvWritesByPolicySigned: the signer answered another count');
      }
      await this.#native('PolicySigned', (c) =>
        addon.policySigned(
          c,
          keyPublic,
          sessions,
          started.map((s) => s.nonceTpm),
          signatures,
          writes.map((w) => w.cpHash),
        ),
      );
    } catch (e) {
      failure = { error: e };
    }
    const settled = await before;
    if (settled?.failed === true) failure = { error: settled.error };
    if (failure !== undefined) {
      await this.#flushSessions(sessions);
      throw failure.error;
    }
    return sessions;
  }

  /** Flushes policy sessions that no command spent (best effort: the sweep catches the rest). */
  async #flushSessions(sessions: readonly number[]): Promise<void> {
    for (const session of sessions) {
      await addon.policySessionFlush(this.#ctx, session).catch(() => undefined);
    }
  }

  /**
   * Flushes every loaded session and transient object but the objects this adapter holds
   * (created or loaded and not yet flushed): between queue slots it holds no session, so
   * everything else is a dead process's.
   */
  async #flushStale(): Promise<void> {
    for (const first of [0x02000000, 0x03000000, 0x80000000]) {
      for (let i = 0; i < STALE_SWEEP; i++) {
        if (this.#held.has(first + i)) continue;
        await addon.flush(this.#ctx, first + i).catch(() => undefined);
      }
    }
  }

  async hierarchyChangeAuth(
    hierarchy: 'owner' | 'endorsement',
    newAuth: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    const hier = HIERARCHIES[hierarchy];
    const auth = nativeAuth({ value: copy(options?.hierarchyAuth) });
    const value = copy(newAuth);
    await this.#call('HierarchyChangeAuth', (c) => addon.hierarchyChangeAuth(c, hier, auth, value));
  }

  async nvCertify(
    signKey: number,
    index: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Attestation> {
    checkU32('signKey', signKey);
    checkU32('index', index);
    const offset = options?.offset ?? 0;
    const size = options?.size ?? (await this.#nvDataSize(index)) - offset;
    const data = copy(qualifyingData);
    const scheme = copy(options?.scheme ?? SIG_SCHEME_NULL);
    const sAuth = nativeAuth(options?.signAuth);
    const authHandle = nvAuthHandle(index, options?.auth);
    const auth = nativeAuth({ value: copy(options?.auth?.value) });
    const r = await this.#call('NV_Certify', (c) =>
      addon.nvCertify(c, signKey, sAuth, authHandle, auth, index, scheme, data, size, offset),
    );
    return { attest: unwrap(TPM2B_ATTEST, r.attest), signature: r.signature };
  }
}

/** The TPM's answers when its session or object slots are full. */
const SLOTS_FULL: ReadonlySet<number> = new Set([
  TPM_RC.OBJECT_MEMORY,
  TPM_RC.SESSION_MEMORY,
  TPM_RC.SESSION_HANDLES,
]);
/** Handles swept per range: libtpms numbers sessions and transients by slot, from 0. */
const STALE_SWEEP = 64;
/** Wiring for the TPM domain: one adapter per configured TCTI. */
export function openTpm(config: { readonly tcti: string }): Promise<NativeTpm> {
  return NativeTpm.open(config.tcti);
}
