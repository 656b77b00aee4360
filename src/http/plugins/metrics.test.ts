import { describe, expect, it } from 'vitest';
import { GrantorError } from '../../shared/errors.js';
import { createMetrics } from '../../shared/metrics.js';
import { meterAttestation, meterGrantDecision } from './metrics.js';

describe('decision and verdict counting', () => {
  it('counts a grant issued by mode, denied by code, and an appliance failure as neither', async () => {
    const m = createMetrics({ defaultMetrics: false });
    expect(await meterGrantDecision(m, 'session', () => Promise.resolve('g'))).toBe('g');
    const denied = new GrantorError('policy_denied', 'no');
    await expect(meterGrantDecision(m, 'quote', () => Promise.reject(denied))).rejects.toBe(denied);
    const down = new GrantorError('hsm_unavailable', 'down');
    await expect(meterGrantDecision(m, 'session', () => Promise.reject(down))).rejects.toBe(down);
    const text = await m.registry.metrics();
    expect(text).toContain('grantor_grants_issued_total{mode="session"} 1');
    expect(text).toContain('grantor_grants_issued_total{mode="quote"} 0');
    expect(text).toContain('grantor_grants_denied_total{reason="policy_denied"} 1');
    expect(text).not.toContain('reason="hsm_unavailable"');
    for (const outcome of ['issued', 'denied', 'error']) {
      expect(text).toContain(`grantor_decision_duration_seconds_count{outcome="${outcome}"} 1`);
    }
  });

  it('counts verdicts by first reason, refusals as rejected, and no verdict on a 5xx', async () => {
    const m = createMetrics({ defaultMetrics: false });
    await meterAttestation(m, () => Promise.resolve({ verdict: 'trusted', reasons: [] }));
    await meterAttestation(m, () =>
      Promise.resolve({ verdict: 'untrusted', reasons: ['pcr_policy_violation', 'x'] }),
    );
    await expect(
      meterAttestation(m, () => Promise.reject(new GrantorError('nonce_reused', 'again'))),
    ).rejects.toMatchObject({ code: 'nonce_reused' });
    await expect(
      meterAttestation(m, () => Promise.reject(new GrantorError('audit_unavailable', 'down'))),
    ).rejects.toMatchObject({ code: 'audit_unavailable' });
    const text = await m.registry.metrics();
    expect(text).toContain('grantor_attestation_verdicts_total{verdict="trusted",reason="ok"} 1');
    expect(text).toContain(
      'grantor_attestation_verdicts_total{verdict="untrusted",reason="pcr_policy_violation"} 1',
    );
    expect(text).toContain(
      'grantor_attestation_verdicts_total{verdict="rejected",reason="nonce_reused"} 1',
    );
    expect(text).not.toContain('audit_unavailable');
  });

  it('counts nothing without a registry', async () => {
    expect(await meterGrantDecision(undefined, 'session', () => Promise.resolve(1))).toBe(1);
  });
});
