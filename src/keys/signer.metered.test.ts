import { describe, expect, it } from 'vitest';
import { createMetrics } from '../shared/metrics.js';
import { HsmPinIncorrectError } from './errors.js';
import { createFakeSigner } from './signer.memory.js';
import { MeteredSigner } from './signer.metered.js';
import type { HsmSigner } from './signer.port.js';

async function series(m: ReturnType<typeof createMetrics>): Promise<string> {
  return m.registry.metrics();
}

describe('MeteredSigner', () => {
  it('times every HSM call by operation and passes the answers through', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const fake = createFakeSigner();
    const signer = new MeteredSigner(fake, m);
    await signer.open();
    const key = await signer.generate('ES256', 'grantor-test');
    expect(await signer.load(key.hsmId, 'ES256')).toEqual(key);
    expect((await signer.sign(key.hsmId, Buffer.from('a'))).length).toBe(64);
    await signer.sign(key.hsmId, Buffer.from('b'));
    expect(await signer.ready()).toEqual({ ok: true });
    await signer.destroy(key.hsmId);
    expect(fake.has(key.hsmId)).toBe(false);
    const text = await series(m);
    for (const [op, n] of [
      ['open', 1],
      ['generate', 1],
      ['load', 1],
      ['sign', 2],
      ['ready', 1],
      ['destroy', 1],
    ] as const) {
      expect(text).toContain(`grantor_hsm_call_duration_seconds_count{op="${op}"} ${n}`);
    }
    // Every series started at zero; none has moved.
    expect(
      text
        .split('\n')
        .filter((l) => l.startsWith('grantor_hsm_errors_total{') && !l.endsWith(' 0')),
    ).toEqual([]);
  });

  it('counts a failed call by its error code and rethrows the same error', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const fake = createFakeSigner();
    const signer = new MeteredSigner(fake, m);
    await signer.open();
    const key = await signer.generate('EdDSA', 'grantor-audit');
    fake.failSigns = true;
    await expect(signer.sign(key.hsmId, Buffer.from('x'))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    await expect(signer.sign(key.hsmId, Buffer.from('y'))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    await expect(signer.load('00', 'EdDSA')).rejects.toMatchObject({ code: 'hsm_key_missing' });
    const text = await series(m);
    expect(text).toContain('grantor_hsm_errors_total{op="sign",code="hsm_unavailable"} 2');
    expect(text).toContain('grantor_hsm_errors_total{op="load",code="hsm_key_missing"} 1');
    // Failed calls are timed too.
    expect(text).toContain('grantor_hsm_call_duration_seconds_count{op="sign"} 2');
  });

  it('counts a wrong PIN at open and a token that is not ready', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const pin = new HsmPinIncorrectError();
    const broken: HsmSigner = Object.assign(createFakeSigner(), {
      open: () => Promise.reject(pin),
    });
    const signer = new MeteredSigner(broken, m);
    await expect(signer.open()).rejects.toBe(pin);
    expect(await signer.ready()).toMatchObject({ ok: false });
    const text = await series(m);
    expect(text).toContain('grantor_hsm_errors_total{op="open",code="hsm_pin_incorrect"} 1');
    expect(text).toContain('grantor_hsm_errors_total{op="ready",code="hsm_not_ready"} 1');
  });
});
