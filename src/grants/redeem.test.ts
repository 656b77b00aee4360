/** Redemption (redeem.ts), with fakes. */
import { describe, expect, it, vi } from 'vitest';
import type { GrantorError } from '../shared/errors.js';
import type { GrantService } from './pipeline.js';
import { Fakes, GW, NOW, body, code, signRequest } from './testing.js';

describe('redemption', () => {
  async function issue(f: Fakes, svc: GrantService, over: Record<string, unknown> = {}) {
    return svc.request(signRequest(body(over), f.key.privateKey), NOW);
  }

  it('first call wins under concurrency; later calls grant_already_redeemed; audited', async () => {
    const f = new Fakes();
    const svc = f.service();
    const { grantId } = await issue(f, svc);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () =>
        svc.redeem(grantId, { audience: 'gw_tickets', outcome: 'started' }, NOW, GW),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected')
        expect((r.reason as GrantorError).code).toBe('grant_already_redeemed');
    }
    expect(f.events.filter((e) => e.type === 'grant.redeem')).toEqual([
      expect.objectContaining({
        subject: grantId,
        decision: 'redeemed',
        reasons: [`gateway:${GW.id}`, 'started'],
      }),
    ]);
    expect((await f.store.get(grantId))?.redemption).toMatchObject({
      audience: 'gw_tickets',
      outcome: 'started',
    });
  });

  it('refusals: grant_not_found, grant_audience_mismatch, grant_expired, grant_revoked', async () => {
    const f = new Fakes();
    const svc = f.service();
    expect(await code(svc.redeem('gr_none', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_not_found',
    );
    const a = await issue(f, svc);
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_other' }, NOW, GW))).toBe(
      'grant_audience_mismatch',
    );
    expect(
      await code(
        svc.redeem(a.grantId, { audience: 'gw_tickets' }, new Date(NOW.getTime() + 121_000), GW),
      ),
    ).toBe('grant_expired');
    await svc.revoke(a.grantId, 'tok_1', NOW);
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
  });

  it('redemption fails closed when the audit log is down: 503, the grant used, its entry written later, once', async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    f.auditFails = () => new Error('down');
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'audit_unavailable',
    );
    // The grant is used up, never reusable after an unclear answer.
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_already_redeemed',
    );
    expect((await f.store.get(a.grantId))?.redemption).toMatchObject({ gateway: GW.id });
    expect(f.events.filter((e) => e.type === 'grant.redeem')).toHaveLength(0);
    f.auditFails = undefined;
    // The log must say the grant was used, and by which gateway, though the gateway was
    // told not to execute.
    await vi.waitFor(
      () => {
        expect(f.events.filter((e) => e.type === 'grant.redeem')).toEqual([
          expect.objectContaining({ subject: a.grantId, reasons: [`gateway:${GW.id}`] }),
        ]);
      },
      { timeout: 10_000 },
    );
    expect(await f.store.pendingAudits(10)).toEqual([]);
    svc.stopAuditRetries();
  });

  it('an outcome whose store write fails is audited once: the report again writes one entry', async () => {
    const f = new Fakes();
    const svc = f.service();
    const { grantId } = await issue(f, svc);
    await svc.redeem(grantId, { audience: 'gw_tickets' }, NOW, GW);
    const update = f.store.update.bind(f.store);
    let failNext = true;
    f.store.update = (records, events, pending) => {
      if (!failNext) return update(records, events, pending);
      failNext = false;
      return Promise.reject(new Error('disk full (test)'));
    };
    expect(await code(svc.outcome(grantId, { outcome: 'succeeded' }, NOW, GW))).toBe(
      'grant_store_unavailable',
    );
    const out = await svc.outcome(grantId, { outcome: 'succeeded' }, NOW, GW);
    expect(f.events.filter((e) => e.type === 'grant.outcome')).toHaveLength(1);
    expect(out).toMatchObject({ outcome: 'succeeded', auditPending: false });
    expect(await f.store.pendingAudits(10)).toEqual([]);
    expect(await code(svc.outcome(grantId, { outcome: 'failed' }, NOW, GW))).toBe(
      'grant_outcome_recorded',
    );
  });

  it('an outcome the log refuses is stored with its entry owed, then written once', async () => {
    const f = new Fakes();
    const svc = f.service();
    const { grantId } = await issue(f, svc);
    await svc.redeem(grantId, { audience: 'gw_tickets' }, NOW, GW);
    f.auditFails = () => new Error('store write failed (test)');
    const out = await svc.outcome(grantId, { outcome: 'aborted' }, NOW, GW);
    expect(out).toMatchObject({ auditSeq: null, auditPending: true });
    expect((await f.store.get(grantId))?.execution?.outcome).toBe('aborted');
    expect(await code(svc.outcome(grantId, { outcome: 'aborted' }, NOW, GW))).toBe(
      'grant_outcome_recorded',
    );
    f.auditFails = undefined;
    await vi.waitFor(
      () => {
        expect(f.events.filter((e) => e.type === 'grant.outcome')).toHaveLength(1);
      },
      { timeout: 10_000 },
    );
    svc.stopAuditRetries();
  });
});
