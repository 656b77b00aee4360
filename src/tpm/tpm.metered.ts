/**
 * A TpmPort that times every command of the port it wraps and counts its failures, by the
 * TPM 2.0 command name (`NV_Extend`, `Quote`, ...). The latency is what the caller waits:
 * the facade's queue included, which is what a slow TPM costs a request. Failures are
 * counted by code: `tpm_unavailable`, `bad_request`, and for a TPM-layer response code
 * `tpm_rc_0x...` (the base code, a bounded set: TPM_RC_NV_RATE is not TPM_RC_AUTH_FAIL).
 */
import { errorCode, timeCall, type GrantorMetrics } from '../shared/metrics.js';
import { TpmError } from './tpm-error.js';
import type {
  Attestation,
  CreatedObject,
  HashAlgName,
  Hierarchy,
  LoadedObject,
  NvAuth,
  NvPolicyWrite,
  NvReadBack,
  NvPublic,
  NvSpace,
  PcrBankSelection,
  PcrRead,
  PolicySigner,
  PrimaryObject,
  PublicArea,
  SigningOptions,
  TimeInfo,
  TpmAuth,
  TpmPort,
} from './tpm.port.js';
import { withLoadedObject } from './tpm.port.js';

export type TpmMetrics = Pick<GrantorMetrics, 'tpmCallSeconds' | 'tpmErrors'>;

/** The error label of a TPM failure. */
export function tpmErrorCode(e: unknown): string {
  if (e instanceof TpmError && e.layer === 'tpm') {
    return `tpm_rc_0x${e.baseRc.toString(16).padStart(3, '0')}`;
  }
  return errorCode(e);
}

export class MeteredTpm implements TpmPort {
  readonly #tpm: TpmPort;
  readonly #metrics: TpmMetrics;

  constructor(tpm: TpmPort, metrics: TpmMetrics) {
    this.#tpm = tpm;
    this.#metrics = metrics;
  }

  #time<T>(command: string, fn: () => Promise<T>): Promise<T> {
    const m = this.#metrics;
    return timeCall(m.tpmCallSeconds, m.tpmErrors, { command }, fn, tpmErrorCode);
  }

  get closed(): boolean {
    return this.#tpm.closed;
  }

  startup(): Promise<void> {
    return this.#time('Startup', () => this.#tpm.startup());
  }

  selfTest(full?: boolean): Promise<void> {
    return this.#time('SelfTest', () => this.#tpm.selfTest(full));
  }

  getRandom(bytes: number): Promise<Buffer> {
    return this.#time('GetRandom', () => this.#tpm.getRandom(bytes));
  }

  readClock(): Promise<TimeInfo> {
    return this.#time('ReadClock', () => this.#tpm.readClock());
  }

  pcrRead(selection: readonly PcrBankSelection[]): Promise<PcrRead> {
    return this.#time('PCR_Read', () => this.#tpm.pcrRead(selection));
  }

  pcrExtend(
    pcr: number,
    digests: readonly { hash: HashAlgName; digest: Uint8Array }[],
  ): Promise<void> {
    return this.#time('PCR_Extend', () => this.#tpm.pcrExtend(pcr, digests));
  }

  createPrimary(
    hierarchy: Hierarchy,
    template: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array; userAuth?: Uint8Array },
  ): Promise<PrimaryObject> {
    return this.#time('CreatePrimary', () => this.#tpm.createPrimary(hierarchy, template, options));
  }

  create(
    parent: number,
    template: Uint8Array,
    options?: { parentAuth?: TpmAuth; userAuth?: Uint8Array },
  ): Promise<CreatedObject> {
    return this.#time('Create', () => this.#tpm.create(parent, template, options));
  }

  load(
    parent: number,
    key: CreatedObject,
    options?: { parentAuth?: TpmAuth },
  ): Promise<LoadedObject> {
    return this.#time('Load', () => this.#tpm.load(parent, key, options));
  }

  flush(handle: number): Promise<void> {
    return this.#time('FlushContext', () => this.#tpm.flush(handle));
  }

  /** As the port says; here so that the flush is one of this port's (timed) calls. */
  withLoaded<T>(
    load: () => Promise<LoadedObject>,
    use: (object: LoadedObject) => Promise<T>,
  ): Promise<T> {
    return withLoadedObject((handle) => this.flush(handle), load, use);
  }

  makePersistent(
    handle: number,
    persistentHandle: number,
    options?: { ownerAuth?: Uint8Array },
  ): Promise<void> {
    return this.#time('EvictControl', () =>
      this.#tpm.makePersistent(handle, persistentHandle, options),
    );
  }

  evictPersistent(persistentHandle: number, options?: { ownerAuth?: Uint8Array }): Promise<void> {
    return this.#time('EvictControl', () => this.#tpm.evictPersistent(persistentHandle, options));
  }

  readPublic(handle: number): Promise<PublicArea> {
    return this.#time('ReadPublic', () => this.#tpm.readPublic(handle));
  }

  quote(
    signKey: number,
    selection: readonly PcrBankSelection[],
    qualifyingData: Uint8Array,
    options?: SigningOptions,
  ): Promise<Attestation> {
    return this.#time('Quote', () => this.#tpm.quote(signKey, selection, qualifyingData, options));
  }

  certify(
    object: number,
    signKey: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { objectAuth?: TpmAuth },
  ): Promise<Attestation> {
    return this.#time('Certify', () => this.#tpm.certify(object, signKey, qualifyingData, options));
  }

  activateCredential(
    activateHandle: number,
    ekHandle: number,
    credentialBlob: Uint8Array,
    encryptedSecret: Uint8Array,
    options?: { activateAuth?: TpmAuth; ekAuth?: TpmAuth },
  ): Promise<Buffer> {
    return this.#time('ActivateCredential', () =>
      this.#tpm.activateCredential(
        activateHandle,
        ekHandle,
        credentialBlob,
        encryptedSecret,
        options,
      ),
    );
  }

  nvDefine(
    space: NvSpace,
    options?: { auth?: Uint8Array; hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    return this.#time('NV_DefineSpace', () => this.#tpm.nvDefine(space, options));
  }

  nvUndefine(
    index: number,
    options?: { hierarchy?: 'owner' | 'platform'; hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    return this.#time('NV_UndefineSpace', () => this.#tpm.nvUndefine(index, options));
  }

  nvRead(
    index: number,
    options?: { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Buffer> {
    return this.#time('NV_Read', () => this.#tpm.nvRead(index, options));
  }

  nvWrite(
    index: number,
    data: Uint8Array,
    options?: { offset?: number; auth?: NvAuth },
  ): Promise<void> {
    return this.#time('NV_Write', () => this.#tpm.nvWrite(index, data, options));
  }

  nvIncrement(index: number, options?: { auth?: NvAuth }): Promise<void> {
    return this.#time('NV_Increment', () => this.#tpm.nvIncrement(index, options));
  }

  nvReadCounter(index: number, options?: { auth?: NvAuth }): Promise<bigint> {
    // The counter is read with TPM2_NV_Read.
    return this.#time('NV_Read', () => this.#tpm.nvReadCounter(index, options));
  }

  nvExtend(index: number, data: Uint8Array, options?: { auth?: NvAuth }): Promise<void> {
    return this.#time('NV_Extend', () => this.#tpm.nvExtend(index, data, options));
  }

  nvReadPublic(index: number): Promise<NvPublic> {
    return this.#time('NV_ReadPublic', () => this.#tpm.nvReadPublic(index));
  }

  nvWriteByPolicySigned(
    index: number,
    write: NvPolicyWrite,
    signer: PolicySigner,
    options?: { readAfter?: readonly NvReadBack[] },
  ): Promise<readonly Buffer[] | undefined> {
    // Timed as its NV command; the session, PolicySigned, the signer's time and the reads
    // back included.
    const command = write.kind === 'increment' ? 'NV_Increment' : 'NV_Extend';
    return this.#time(command, () =>
      this.#tpm.nvWriteByPolicySigned(index, write, signer, options),
    );
  }

  hierarchyChangeAuth(
    hierarchy: 'owner' | 'endorsement',
    newAuth: Uint8Array,
    options?: { hierarchyAuth?: Uint8Array },
  ): Promise<void> {
    return this.#time('HierarchyChangeAuth', () =>
      this.#tpm.hierarchyChangeAuth(hierarchy, newAuth, options),
    );
  }

  nvCertify(
    signKey: number,
    index: number,
    qualifyingData: Uint8Array,
    options?: SigningOptions & { size?: number; offset?: number; auth?: NvAuth },
  ): Promise<Attestation> {
    return this.#time('NV_Certify', () =>
      this.#tpm.nvCertify(signKey, index, qualifyingData, options),
    );
  }

  /** Not a TPM command: passed through untimed. */
  close(): Promise<void> {
    return this.#tpm.close();
  }
}
