import { describe, expect, it } from 'vitest';
import { createMetrics, labelValue, timeCall } from './metrics.js';

describe('metrics', () => {
  it('exposes every handle the issue lists in its own registry', async () => {
    const m = createMetrics({ defaultMetrics: false });
    m.grantsIssued.inc({ mode: 'session' });
    m.grantsDenied.inc({ reason: 'policy_denied' });
    m.attestationVerdicts.inc({ verdict: 'untrusted', reason: 'pcr_policy_violation' });
    m.decisionSeconds.observe({ outcome: 'issued' }, 0.01);
    m.auditBatchSize.observe(12);
    m.nvWrites.inc({ index: 'extend' });
    m.anchorLagEntries.set(3);
    m.anchorLagSeconds.set(0.2);
    const text = await m.registry.metrics();
    for (const line of [
      'grantor_grants_issued_total{mode="session"} 1',
      'grantor_grants_denied_total{reason="policy_denied"} 1',
      'grantor_attestation_verdicts_total{verdict="untrusted",reason="pcr_policy_violation"} 1',
      'grantor_decision_duration_seconds_count{outcome="issued"} 1',
      'grantor_audit_batch_size_sum 12',
      'grantor_nv_writes_total{index="extend"} 1',
      'grantor_anchor_lag_entries 3',
    ]) {
      expect(text).toContain(line);
    }
    // Two apps in one process do not collide.
    expect(() => createMetrics({ defaultMetrics: false })).not.toThrow();
  });

  it('times a hardware call and counts its failure by code', async () => {
    const m = createMetrics({ defaultMetrics: false });
    expect(
      await timeCall(m.tpmCallSeconds, m.tpmErrors, { command: 'Quote' }, () => Promise.resolve(7)),
    ).toBe(7);
    const failure = Object.assign(new Error('x'), { code: 'tpm_unavailable' });
    await expect(
      timeCall(m.tpmCallSeconds, m.tpmErrors, { command: 'Quote' }, () => Promise.reject(failure)),
    ).rejects.toBe(failure);
    await expect(
      timeCall(m.hsmCallSeconds, m.hsmErrors, { op: 'sign' }, () => Promise.reject(new Error('y'))),
    ).rejects.toThrow('y');
    const text = await m.registry.metrics();
    expect(text).toContain('grantor_tpm_call_duration_seconds_count{command="Quote"} 2');
    expect(text).toContain('grantor_tpm_errors_total{command="Quote",code="tpm_unavailable"} 1');
    expect(text).toContain('grantor_hsm_errors_total{op="sign",code="unknown"} 1');
  });

  it('computes the anchor lag age at scrape time, and 0 once nothing is pending', async () => {
    let t = 1_000_000;
    const m = createMetrics({ defaultMetrics: false, now: () => t });
    const lag = async (): Promise<string> =>
      (await m.registry.metrics())
        .split('\n')
        .filter((l) => l.startsWith('grantor_anchor_lag'))
        .join(' ');
    m.setAnchorLag(3, t);
    t += 1500;
    expect(await lag()).toBe('grantor_anchor_lag_entries 3 grantor_anchor_lag_seconds 1.5');
    t += 1000;
    expect(await lag()).toBe('grantor_anchor_lag_entries 3 grantor_anchor_lag_seconds 2.5');
    m.setAnchorLag(0, t - 5000);
    expect(await lag()).toBe('grantor_anchor_lag_entries 0 grantor_anchor_lag_seconds 0');
  });

  it('folds label values outside the vocabulary into "other"', () => {
    expect(labelValue('policy_denied')).toBe('policy_denied');
    expect(labelValue('a b')).toBe('other');
    expect(labelValue('x'.repeat(65))).toBe('other');
  });
});
