/**
 * Issue 18 on the real parts (test/grants/rig.ts: swtpm, SoftHSM2, Cedar over
 * policies/default, the anchored audit log that refuses an entry past 32 reasons): a
 * transfer with 40 notify children revoked in one call, and `POST /v1/runtimes/{id}/revoke`
 * revoking the runtime's live grants and their descendants, both through the routes.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectRedeemRevoked,
  lineageStates,
  paymentsRuntime,
  revokeRuntime,
  startRig,
  transferTree,
  type AttestedRuntime,
  type Rig,
} from './rig.js';

let rig: Rig;
let payments: AttestedRuntime;

beforeAll(async () => {
  rig = await startRig();
  payments = await paymentsRuntime(rig, 'payments-trees');
}, 180_000);

afterAll(async () => {
  await rig.close();
});

describe('revocation on real trees', () => {
  it('a transfer with 40 live children is revoked whole: 200, one entry within the log limits', async () => {
    const { root, kids } = await transferTree(rig, payments, 40);
    const res = await rig.app.inject({ method: 'POST', url: `/v1/grants/${root}/revoke` });
    expect(res.statusCode, res.body).toBe(200);
    const out = res.json<{ revoked: string[]; auditSeq: number }>();
    expect(out.revoked).toHaveLength(41);
    const [entry] = await rig.audit.entries(out.auditSeq, out.auditSeq + 1);
    expect(entry).toMatchObject({ type: 'grant.revoke', subject: root, decision: 'revoked' });
    const reasons = entry?.reasons ?? [];
    expect(reasons.length).toBeLessThanOrEqual(32);
    const digest = createHash('sha256')
      .update(JSON.stringify([...out.revoked].sort()))
      .digest('hex');
    expect(reasons).toContain('count:41');
    expect(reasons).toContain(`ids:${digest}`);
    await expectRedeemRevoked(rig, [kids[0] ?? '', kids[39] ?? '']);
  }, 120_000);

  it('POST /v1/runtimes/{id}/revoke revokes its live grants and their descendants, audited with counts', async () => {
    const { root, kids } = await transferTree(rig, payments, 3);
    const res = await revokeRuntime(rig, payments.runtime.runtimeId);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      runtimeId: payments.runtime.runtimeId,
      state: 'revoked',
      grantsRevoked: 4,
    });
    await expectRedeemRevoked(rig, [root, ...kids]);
    expect(await lineageStates(rig, root)).toEqual(['revoked', 'revoked', 'revoked', 'revoked']);
    const log = await rig.audit.entries(0, 10_000);
    const isCascade = (e: (typeof log)[number]) =>
      e.type === 'grant.revoke' && e.subject === payments.runtime.runtimeId;
    const cascade = log.filter(isCascade);
    expect(cascade).toHaveLength(1);
    expect(cascade[0]?.reasons).toEqual(
      expect.arrayContaining([`runtime:${payments.runtime.runtimeId}`, 'count:4']),
    );
    // The runtime's own entry comes first: no grant of it is issued during the cascade.
    const runtimeEntry = log.findIndex(
      (e) => e.type === 'runtime.revoke' && e.subject === payments.runtime.runtimeId,
    );
    expect(runtimeEntry).toBeGreaterThanOrEqual(0);
    expect(runtimeEntry).toBeLessThan(log.findIndex(isCascade));
  }, 120_000);
});
