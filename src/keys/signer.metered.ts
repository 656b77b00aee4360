/**
 * An HsmSigner that times every call of the signer it wraps (`open`, `generate`, `load`,
 * `sign`, `destroy`, `ready`) and counts its failures by error code (`hsm_unavailable`,
 * `hsm_pin_incorrect`, `hsm_key_unsafe`, ...). A `ready()` that answers not ok counts as a
 * `ready` failure with code `hsm_not_ready`: the probe reports a fault, it does not throw.
 */
import { callTimer, type CallTimer, type GrantorMetrics } from '../shared/metrics.js';
import type { HsmKey, HsmSigner, KeyAlgorithm } from './signer.port.js';

export type HsmMetrics = Pick<GrantorMetrics, 'hsmCallSeconds' | 'hsmErrors'>;

export class MeteredSigner implements HsmSigner {
  readonly #signer: HsmSigner;
  readonly #errors: HsmMetrics['hsmErrors'];
  readonly #time: CallTimer;

  constructor(signer: HsmSigner, metrics: HsmMetrics) {
    this.#signer = signer;
    this.#errors = metrics.hsmErrors;
    this.#time = callTimer(metrics.hsmCallSeconds, metrics.hsmErrors, 'op');
  }

  open(): Promise<void> {
    return this.#time('open', () => this.#signer.open());
  }

  generate(alg: KeyAlgorithm, label: string): Promise<HsmKey> {
    return this.#time('generate', () => this.#signer.generate(alg, label));
  }

  load(hsmId: string, alg: KeyAlgorithm): Promise<HsmKey> {
    return this.#time('load', () => this.#signer.load(hsmId, alg));
  }

  sign(hsmId: string, data: Uint8Array): Promise<Uint8Array> {
    return this.#time('sign', () => this.#signer.sign(hsmId, data));
  }

  destroy(hsmId: string): Promise<void> {
    return this.#time('destroy', () => this.#signer.destroy(hsmId));
  }

  async ready(): Promise<{ ok: boolean; reason?: string }> {
    const r = await this.#time('ready', () => this.#signer.ready());
    if (!r.ok) this.#errors.inc({ op: 'ready', code: 'hsm_not_ready' });
    return r;
  }

  /** Not an HSM operation worth a series: passed through untimed. */
  close(): Promise<void> {
    return this.#signer.close();
  }
}
