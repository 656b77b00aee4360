/** Redemption (redeem.ts), with fakes. */
import { describe, expect, it } from 'vitest';
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

  it('redemption fails closed when the audit log is down', async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    f.auditFails = () => new Error('down');
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'audit_unavailable',
    );
    f.auditFails = undefined;
    // The grant is used up, never reusable after an unclear answer.
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_already_redeemed',
    );
  });
});
