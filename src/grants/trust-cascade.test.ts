import type { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { TrustWithdrawal } from '../attestation/index.js';
import { AuditUnavailableError } from '../audit/index.js';
import { TrustCascade, type TrustCascadeDeps } from './trust-cascade.js';

const actor = { id: 'tok_1', role: 'operator', name: 'alice' };
const NOW = new Date('2026-12-01T00:00:00.000Z');

function fakes(affected: string[], revokeFails = false) {
  const calls: string[] = [];
  const deps: TrustCascadeDeps = {
    attestation: {
      runtimesOnReferencePolicy: (name, previous) => {
        calls.push(`on:${name}:${previous.length}`);
        return Promise.resolve(affected);
      },
      runtimesOutsideEkCas: (cas) => {
        calls.push(`outside:${cas.length}`);
        return Promise.resolve(affected);
      },
      endSessions: (ids) => {
        calls.push(`end:${ids.join(',')}`);
        return ids.length;
      },
    },
    grants: {
      revokeRuntimes: (ids, cause, by, now) => {
        calls.push(`revoke:${ids.join(',')}:${cause.subject}:${cause.reason}:${by}`);
        expect(now).toEqual(NOW);
        if (revokeFails) return Promise.reject(new AuditUnavailableError('down'));
        return Promise.resolve({
          runtimes: ids.length,
          revoked: ['gr_1', 'gr_2'],
          auditSeq: 7,
          auditPending: false,
        });
      },
    },
    now: () => NOW.getTime(),
  };
  return { calls, cascade: new TrustCascade(deps) };
}

const disable: TrustWithdrawal = { kind: 'refpolicy.disable', name: 'fleet', previous: [], actor };

describe('TrustCascade', () => {
  it('ends the sessions, then revokes the grants in one call naming the change', async () => {
    const { calls, cascade } = fakes(['rt_a', 'rt_b']);
    expect(await cascade.apply(disable)).toEqual({
      subject: 'refpolicy:fleet',
      runtimes: ['rt_a', 'rt_b'],
      sessionsEnded: 2,
      grantsRevoked: 2,
      auditSeq: 7,
      auditPending: false,
    });
    expect(calls).toEqual([
      'on:fleet:0',
      'end:rt_a,rt_b',
      'revoke:rt_a,rt_b:refpolicy:fleet:cause:refpolicy.disable:operator:tok_1',
    ]);
  });

  it('a replaced policy and a replaced EK CA bundle are named as such', async () => {
    const put = fakes(['rt_a']);
    await put.cascade.apply({ ...disable, kind: 'refpolicy.put' });
    expect(put.calls.at(-1)).toContain(':cause:refpolicy.put:');
    const ek = fakes(['rt_a']);
    const cas: X509Certificate[] = [];
    const out = await ek.cascade.apply({
      kind: 'ekca.replace',
      sha256: 'ab'.repeat(32),
      cas,
      actor,
    });
    expect(out.subject).toBe(`ekca:sha256:${'ab'.repeat(32)}`);
    expect(ek.calls).toEqual([
      'outside:0',
      'end:rt_a',
      `revoke:rt_a:ekca:sha256:${'ab'.repeat(32)}:cause:ekca.replace:operator:tok_1`,
    ]);
  });

  it('nobody rested on it: nothing ended, revoked or written', async () => {
    const { calls, cascade } = fakes([]);
    expect(await cascade.apply(disable)).toMatchObject({ sessionsEnded: 0, auditSeq: null });
    expect(calls).toEqual(['on:fleet:0']);
  });

  it('the log cannot record: audit_unavailable, the sessions stay ended (fail closed)', async () => {
    const { calls, cascade } = fakes(['rt_a'], true);
    await expect(cascade.apply(disable)).rejects.toMatchObject({ code: 'audit_unavailable' });
    expect(calls[1]).toBe('end:rt_a');
  });
});
