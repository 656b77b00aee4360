/** Lineage: a child under its parent, depth and width (lineage.ts), with fakes. */
import { describe, expect, it } from 'vitest';
import type { GrantorError } from '../shared/errors.js';
import type { GrantRecord } from './grant-store.port.js';
import { Fakes, NOW, RT, allow, body, code, decodeClaims, signRequest } from './testing.js';

describe('GrantService.request: lineage', () => {
  const parentRecord = (over: Partial<GrantRecord> = {}): GrantRecord => ({
    grantId: 'gr_parent',
    runtimeId: RT,
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw',
    parent: null,
    root: 'gr_parent',
    depth: 0,
    iat: NOW.getTime() / 1000 - 10,
    exp: NOW.getTime() / 1000 + 50,
    auditSeq: 0,
    revokedAt: null,
    redemption: null,
    ...over,
  });

  it('a child of a live parent: depth, root, policy context, exp capped at the parent', async () => {
    const f = new Fakes();
    await f.store.create(parentRecord());
    const issued = await f
      .service()
      .request(
        signRequest(body({ parentGrantId: 'gr_parent', ttlSeconds: 300 }), f.key.privateKey),
        NOW,
      );
    expect(decodeClaims(issued.grant)).toMatchObject({
      lin: { parent: 'gr_parent', root: 'gr_parent', depth: 1 },
      exp: NOW.getTime() / 1000 + 50,
    });
    expect(f.policyCalls[0]?.lineage).toEqual({
      depth: 1,
      root: 'gr_parent',
      parentAction: 'payments.transfer',
      delegated: false,
      parentResource: 'acct:1',
      parentRuntime: { id: RT, labels: { team: 'payments' } },
    });
    expect(await f.store.children('gr_parent')).toEqual([issued.grantId]);
  });

  it('a parent of another runtime is a delegation for the policy to decide', async () => {
    const f = new Fakes();
    f.addRuntime('rt_other', {});
    await f.store.create(parentRecord({ runtimeId: 'rt_other' }));
    f.decision = (req) =>
      req.lineage.delegated
        ? {
            ...allow(),
            decision: 'deny',
            reasons: ['delegation to another runtime is not allowed'],
          }
        : allow();
    const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
    expect(await code(f.service().request(req, NOW))).toBe('policy_denied');
  });

  const refusals: [string, Partial<GrantRecord> | null, string][] = [
    ['unknown parent', null, 'grant_parent_not_found'],
    ['expired parent', { exp: NOW.getTime() / 1000 }, 'grant_parent_expired'],
    ['revoked parent', { revokedAt: NOW.toISOString() }, 'grant_parent_revoked'],
    ['parent with a foreign root', { root: 'gr_elsewhere' }, 'grant_lineage_invalid'],
    [
      'parent whose own parent is unknown',
      { parent: 'gr_ghost', depth: 1 },
      'grant_lineage_invalid',
    ],
  ];
  for (const [name, over, expected] of refusals) {
    it(`${name}: ${expected}, no policy call`, async () => {
      const f = new Fakes();
      if (over !== null) await f.store.create(parentRecord(over));
      const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
      expect(await code(f.service().request(req, NOW))).toBe(expected);
      expect(f.policyCalls).toHaveLength(0);
    });
  }

  it('a child deeper than maxDepth: grant_depth_exceeded', async () => {
    const f = new Fakes();
    await f.store.create(parentRecord());
    const req = signRequest(body({ parentGrantId: 'gr_parent' }), f.key.privateKey);
    expect(await code(f.service({ maxDepth: 0 }).request(req, NOW))).toBe('grant_depth_exceeded');
  });
});

describe('tree width (issue 18)', () => {
  it('a parent with maxChildren children: grant_width_exceeded, also for children in flight', async () => {
    const f = new Fakes();
    const svc = f.service({ maxChildren: 3 });
    const parent = await svc.request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    f.auditDelayMs = 5;
    const child = () =>
      svc.request(signRequest(body({ parentGrantId: parent.grantId }), f.key.privateKey), NOW);
    // Five at once: the in-flight ones count, so exactly three are issued.
    const results = await Promise.allSettled(Array.from({ length: 5 }, child));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of results) {
      if (r.status === 'rejected')
        expect((r.reason as GrantorError).code).toBe('grant_width_exceeded');
    }
    expect(await f.store.children(parent.grantId)).toHaveLength(3);
    // A failed child frees its place: none is held by a request that released nothing.
    const other = await svc.request(signRequest(body({ ttlSeconds: 600 }), f.key.privateKey), NOW);
    f.policyFails = () => new Error('engine down');
    expect(
      await code(
        svc.request(signRequest(body({ parentGrantId: other.grantId }), f.key.privateKey), NOW),
      ),
    ).toBe('policy_unavailable');
    f.policyFails = undefined;
    const childOf = (id: string) =>
      svc.request(signRequest(body({ parentGrantId: id }), f.key.privateKey), NOW);
    for (let i = 0; i < 3; i += 1) await childOf(other.grantId);
    expect(await code(childOf(other.grantId))).toBe('grant_width_exceeded');
  });
});
