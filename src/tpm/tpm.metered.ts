/**
 * A TpmPort that times every command of the port it wraps and counts its failures, by the
 * TPM 2.0 command name (`NV_Extend`, `Quote`, ...). The latency is what the caller waits:
 * the facade's queue included, which is what a slow TPM costs a request. Failures are
 * counted by code: `tpm_unavailable`, `bad_request`, and for a TPM-layer response code
 * `tpm_rc_0x...` (the base code, a bounded set: TPM_RC_NV_RATE is not TPM_RC_AUTH_FAIL).
 * A command takes its port method's parameters as they are (`Parameters<TpmPort[...]>`) and
 * passes them on, so the wrapper does not restate, and cannot drift from, the port.
 */
import { callTimer, errorCode, type CallTimer, type GrantorMetrics } from '../shared/metrics.js';
import { TpmError } from './errors.js';
import type {
  Attestation,
  CreatedObject,
  LoadedObject,
  NvPolicyWrite,
  NvReadBack,
  NvPublic,
  PcrRead,
  PolicySigner,
  PrimaryObject,
  PublicArea,
  TimeInfo,
  TpmPort,
} from './tpm.port.js';
import { nvPolicyWriteCommand, withLoadedObject } from './tpm.port.js';

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
  readonly #time: CallTimer;

  constructor(tpm: TpmPort, metrics: TpmMetrics) {
    this.#tpm = tpm;
    this.#time = callTimer(metrics.tpmCallSeconds, metrics.tpmErrors, 'command', tpmErrorCode);
  }

  get closed(): boolean {
    return this.#tpm.closed;
  }

  startup(): Promise<void> {
    return this.#time('Startup', () => this.#tpm.startup());
  }

  selfTest(...a: Parameters<TpmPort['selfTest']>): Promise<void> {
    return this.#time('SelfTest', () => this.#tpm.selfTest(...a));
  }

  getRandom(...a: Parameters<TpmPort['getRandom']>): Promise<Buffer> {
    return this.#time('GetRandom', () => this.#tpm.getRandom(...a));
  }

  readClock(): Promise<TimeInfo> {
    return this.#time('ReadClock', () => this.#tpm.readClock());
  }

  pcrRead(...a: Parameters<TpmPort['pcrRead']>): Promise<PcrRead> {
    return this.#time('PCR_Read', () => this.#tpm.pcrRead(...a));
  }

  pcrExtend(...a: Parameters<TpmPort['pcrExtend']>): Promise<void> {
    return this.#time('PCR_Extend', () => this.#tpm.pcrExtend(...a));
  }

  createPrimary(...a: Parameters<TpmPort['createPrimary']>): Promise<PrimaryObject> {
    return this.#time('CreatePrimary', () => this.#tpm.createPrimary(...a));
  }

  create(...a: Parameters<TpmPort['create']>): Promise<CreatedObject> {
    return this.#time('Create', () => this.#tpm.create(...a));
  }

  load(...a: Parameters<TpmPort['load']>): Promise<LoadedObject> {
    return this.#time('Load', () => this.#tpm.load(...a));
  }

  flush(...a: Parameters<TpmPort['flush']>): Promise<void> {
    return this.#time('FlushContext', () => this.#tpm.flush(...a));
  }

  /** As the port says; here so that the flush is one of this port's (timed) calls. */
  withLoaded<T>(
    load: () => Promise<LoadedObject>,
    use: (object: LoadedObject) => Promise<T>,
  ): Promise<T> {
    return withLoadedObject((handle) => this.flush(handle), load, use);
  }

  makePersistent(...a: Parameters<TpmPort['makePersistent']>): Promise<void> {
    return this.#time('EvictControl', () => this.#tpm.makePersistent(...a));
  }

  evictPersistent(...a: Parameters<TpmPort['evictPersistent']>): Promise<void> {
    return this.#time('EvictControl', () => this.#tpm.evictPersistent(...a));
  }

  readPublic(...a: Parameters<TpmPort['readPublic']>): Promise<PublicArea> {
    return this.#time('ReadPublic', () => this.#tpm.readPublic(...a));
  }

  quote(...a: Parameters<TpmPort['quote']>): Promise<Attestation> {
    return this.#time('Quote', () => this.#tpm.quote(...a));
  }

  certify(...a: Parameters<TpmPort['certify']>): Promise<Attestation> {
    return this.#time('Certify', () => this.#tpm.certify(...a));
  }

  activateCredential(...a: Parameters<TpmPort['activateCredential']>): Promise<Buffer> {
    return this.#time('ActivateCredential', () => this.#tpm.activateCredential(...a));
  }

  nvDefine(...a: Parameters<TpmPort['nvDefine']>): Promise<void> {
    return this.#time('NV_DefineSpace', () => this.#tpm.nvDefine(...a));
  }

  nvUndefine(...a: Parameters<TpmPort['nvUndefine']>): Promise<void> {
    return this.#time('NV_UndefineSpace', () => this.#tpm.nvUndefine(...a));
  }

  nvRead(...a: Parameters<TpmPort['nvRead']>): Promise<Buffer> {
    return this.#time('NV_Read', () => this.#tpm.nvRead(...a));
  }

  nvWrite(...a: Parameters<TpmPort['nvWrite']>): Promise<void> {
    return this.#time('NV_Write', () => this.#tpm.nvWrite(...a));
  }

  nvIncrement(...a: Parameters<TpmPort['nvIncrement']>): Promise<void> {
    return this.#time('NV_Increment', () => this.#tpm.nvIncrement(...a));
  }

  nvReadCounter(...a: Parameters<TpmPort['nvReadCounter']>): Promise<bigint> {
    // The counter is read with TPM2_NV_Read.
    return this.#time('NV_Read', () => this.#tpm.nvReadCounter(...a));
  }

  nvExtend(...a: Parameters<TpmPort['nvExtend']>): Promise<void> {
    return this.#time('NV_Extend', () => this.#tpm.nvExtend(...a));
  }

  nvReadPublic(...a: Parameters<TpmPort['nvReadPublic']>): Promise<NvPublic> {
    return this.#time('NV_ReadPublic', () => this.#tpm.nvReadPublic(...a));
  }

  nvWriteByPolicySigned(
    index: number,
    write: NvPolicyWrite,
    signer: PolicySigner,
    options?: { readAfter?: readonly NvReadBack[] },
  ): Promise<readonly Buffer[] | undefined> {
    // Timed as its NV command; the session, PolicySigned, the signer's time and the reads
    // back included.
    return this.#time(nvPolicyWriteCommand(write), () =>
      this.#tpm.nvWriteByPolicySigned(index, write, signer, options),
    );
  }

  /**
   * Timed from the moment `before` resolves: the time the caller waits for the TPM once its
   * own write is done (the sessions and signatures made meanwhile are not on its path).
   * Labelled by its NV commands joined with `.` (`NV_Extend.NV_Increment`).
   */
  nvWritesByPolicySigned(
    ...a: Parameters<TpmPort['nvWritesByPolicySigned']>
  ): ReturnType<TpmPort['nvWritesByPolicySigned']> {
    const [writes, , options] = a;
    const command = writes.map((w) => nvPolicyWriteCommand(w.write)).join('.');
    const call = this.#tpm.nvWritesByPolicySigned(...a);
    if (options?.before === undefined) return this.#time(command, () => call);
    // Handled here at once: the timer attaches only once `before` has settled.
    call.catch(() => undefined);
    return Promise.resolve(options.before).then(
      () => this.#time(command, () => call),
      () => call,
    );
  }

  hierarchyChangeAuth(...a: Parameters<TpmPort['hierarchyChangeAuth']>): Promise<void> {
    return this.#time('HierarchyChangeAuth', () => this.#tpm.hierarchyChangeAuth(...a));
  }

  nvCertify(...a: Parameters<TpmPort['nvCertify']>): Promise<Attestation> {
    return this.#time('NV_Certify', () => this.#tpm.nvCertify(...a));
  }

  /** Not a TPM command: passed through untimed. */
  close(): Promise<void> {
    return this.#tpm.close();
  }
}
