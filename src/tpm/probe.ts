import type { ReadinessProbe } from '../shared/readiness.js';
import type { TpmPort } from './tpm.port.js';

/** Readiness of the appliance's TPM: a real GetRandom round trip. */
export function tpmProbe(tpm: TpmPort): ReadinessProbe {
  return {
    name: 'tpm',
    code: 'tpm_unavailable',
    check: async () => {
      const r = await tpm.getRandom(8);
      return r.length === 8 ? { ok: true } : { ok: false, reason: 'short GetRandom answer' };
    },
  };
}
