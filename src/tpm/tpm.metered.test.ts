import { describe, expect, it } from 'vitest';
import { createMetrics } from '../shared/metrics.js';
import { TPM_RC, TpmError, TpmUnavailableError } from './errors.js';
import { MeteredTpm, tpmErrorCode } from './tpm.metered.js';
import type { LoadedObject, TpmPort } from './tpm.port.js';

/** A port of which only the listed commands answer (the rest are not called here). */
function stubTpm(over: Partial<TpmPort>): TpmPort {
  return over as TpmPort;
}

describe('MeteredTpm', () => {
  it('times each command by its TPM 2.0 name and passes answers through', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const flushed: number[] = [];
    const tpm = new MeteredTpm(
      stubTpm({
        getRandom: (n) => Promise.resolve(Buffer.alloc(n, 7)),
        nvExtend: () => Promise.resolve(),
        nvIncrement: () => Promise.resolve(),
        nvReadCounter: () => Promise.resolve(42n),
        createPrimary: () =>
          Promise.resolve({ handle: 0x80000001, name: Buffer.alloc(2), public: Buffer.alloc(2) }),
        flush: (h) => {
          flushed.push(h);
          return Promise.resolve();
        },
        closed: false,
      }),
      m,
    );
    expect(await tpm.getRandom(8)).toEqual(Buffer.alloc(8, 7));
    await tpm.nvExtend(0x01500021, Buffer.alloc(32));
    await tpm.nvIncrement(0x01500020);
    expect(await tpm.nvReadCounter(0x01500020)).toBe(42n);
    const out = await tpm.withLoaded(
      () => tpm.createPrimary('endorsement', new Uint8Array(0)),
      (o: LoadedObject) => Promise.resolve(o.handle),
    );
    expect(out).toBe(0x80000001);
    expect(flushed).toEqual([0x80000001]);
    expect(tpm.closed).toBe(false);
    const text = await m.registry.metrics();
    for (const command of [
      'GetRandom',
      'NV_Extend',
      'NV_Increment',
      'NV_Read',
      'CreatePrimary',
      'FlushContext',
    ]) {
      expect(text).toContain(`grantor_tpm_call_duration_seconds_count{command="${command}"} 1`);
    }
    // Every series started at zero; none has moved.
    expect(
      text
        .split('\n')
        .filter((l) => l.startsWith('grantor_tpm_errors_total{') && !l.endsWith(' 0')),
    ).toEqual([]);
  });

  it('counts failures by code: tpm_unavailable, and the base TPM response code', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const down = new TpmUnavailableError('connection refused');
    // TPM_RC_HANDLE in handle 1 (0x18b): counted by its base code 0x08b.
    const noHandle = new TpmError('NV_ReadPublic', 0x18b, 'tpm', 'TPM_RC_HANDLE');
    expect(noHandle.is(TPM_RC.HANDLE)).toBe(true);
    const tpm = new MeteredTpm(
      stubTpm({
        getRandom: () => Promise.reject(down),
        nvReadPublic: () => Promise.reject(noHandle),
        nvExtend: () => Promise.reject(new TpmError('NV_Extend', 0x000a0008, 'tcti', 'io')),
      }),
      m,
    );
    await expect(tpm.getRandom(8)).rejects.toBe(down);
    await expect(tpm.getRandom(8)).rejects.toBe(down);
    await expect(tpm.nvReadPublic(0x01500020)).rejects.toBe(noHandle);
    await expect(tpm.nvExtend(0x01500021, Buffer.alloc(32))).rejects.toMatchObject({
      code: 'tpm_error',
    });
    const text = await m.registry.metrics();
    expect(text).toContain(
      'grantor_tpm_errors_total{command="GetRandom",code="tpm_unavailable"} 2',
    );
    expect(text).toContain(
      'grantor_tpm_errors_total{command="NV_ReadPublic",code="tpm_rc_0x08b"} 1',
    );
    expect(text).toContain('grantor_tpm_errors_total{command="NV_Extend",code="tpm_error"} 1');
    expect(text).toContain('grantor_tpm_call_duration_seconds_count{command="GetRandom"} 2');
  });

  it('labels an error without a code as unknown', () => {
    expect(tpmErrorCode(new Error('x'))).toBe('unknown');
    expect(tpmErrorCode(new TpmError('NV_Increment', 0x920, 'tpm', 'TPM_RC_NV_RATE'))).toBe(
      'tpm_rc_0x920',
    );
  });
});
