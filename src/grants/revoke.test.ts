/** Revocation (revoke.ts) and the lineage view of what it revoked, with fakes. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { GrantorError } from '../shared/errors.js';
import type { GrantRecord } from './grant-store.port.js';
import type { GrantService } from './pipeline.js';
import { Fakes, GW, NOW, RT, body, code, signRequest } from './testing.js';

describe('lineage and revocation', () => {
  async function issue(f: Fakes, svc: GrantService, over: Record<string, unknown> = {}) {
    return svc.request(signRequest(body(over), f.key.privateKey), NOW);
  }

  it('lineage lists ancestors and descendants; revoke takes the live descendants with it', async () => {
    const f = new Fakes();
    const svc = f.service();
    const root = await issue(f, svc, { ttlSeconds: 600 });
    const child = await issue(f, svc, { parentGrantId: root.grantId, ttlSeconds: 600 });
    const shortChild = await issue(f, svc, { parentGrantId: root.grantId, ttlSeconds: 5 });
    const grandchild = await issue(f, svc, { parentGrantId: child.grantId, ttlSeconds: 600 });
    const l = await svc.lineage(child.grantId, NOW);
    expect(l.grant.grantId).toBe(child.grantId);
    expect(l.ancestors.map((g) => g.grantId)).toEqual([root.grantId]);
    expect(l.descendants.map((g) => g.grantId)).toEqual([grandchild.grantId]);
    const later = new Date(NOW.getTime() + 10_000);
    const r = await svc.revoke(root.grantId, 'tok_op', later);
    expect(r.revoked.sort()).toEqual([root.grantId, child.grantId, grandchild.grantId].sort());
    expect(r.revoked).not.toContain(shortChild.grantId);
    const all = await svc.lineage(root.grantId, later);
    expect(all.grant.state).toBe('revoked');
    expect(Object.fromEntries(all.descendants.map((g) => [g.grantId, g.state]))).toEqual({
      [child.grantId]: 'revoked',
      [shortChild.grantId]: 'expired',
      [grandchild.grantId]: 'revoked',
    });
    expect(f.events.at(-1)).toMatchObject({
      type: 'grant.revoke',
      subject: root.grantId,
      decision: 'revoked',
    });
    const req = signRequest(
      body({ parentGrantId: child.grantId, issuedAt: later.toISOString() }),
      f.key.privateKey,
    );
    expect(await code(svc.request(req, later))).toBe('grant_parent_revoked');
    expect(await code(svc.lineage('gr_none', NOW))).toBe('grant_not_found');
    expect(await code(svc.revoke('gr_none', 'tok', NOW))).toBe('grant_not_found');
  });
});

describe('revocation on real trees (issue 18)', () => {
  async function issue(f: Fakes, svc: GrantService, over: Record<string, unknown> = {}) {
    return svc.request(signRequest(body({ ttlSeconds: 600, ...over }), f.key.privateKey), NOW);
  }
  const record = (id: string, over: Partial<GrantRecord> = {}): GrantRecord => ({
    grantId: id,
    runtimeId: RT,
    action: 'payments.transfer',
    resource: 'acct:1',
    audience: 'gw_tickets',
    parent: null,
    root: id,
    depth: 0,
    iat: NOW.getTime() / 1000 - 10,
    exp: NOW.getTime() / 1000 + 500,
    auditSeq: 0,
    revokedAt: null,
    redemption: null,
    ...over,
  });

  it('revokes a root with 40 live children: one entry within the log limits, count and ids digest', async () => {
    const f = new Fakes();
    const svc = f.service();
    const root = await issue(f, svc);
    const children = [];
    for (let i = 0; i < 40; i += 1) {
      children.push(await issue(f, svc, { parentGrantId: root.grantId }));
    }
    const r = await svc.revoke(root.grantId, 'tok_op', NOW);
    expect(r.revoked).toHaveLength(41);
    const entry = f.events.at(-1);
    expect(entry?.type).toBe('grant.revoke');
    const reasons = entry?.reasons ?? [];
    expect(reasons.length).toBeLessThanOrEqual(32);
    for (const reason of reasons) expect(reason.length).toBeLessThanOrEqual(256);
    const ids = [...r.revoked].sort();
    const digest = createHash('sha256').update(JSON.stringify(ids)).digest('hex');
    expect(reasons.slice(0, 3)).toEqual(['by:tok_op', 'count:41', `ids:${digest}`]);
    expect(reasons.at(-1)).toMatch(/^and \d+ more$/);
    for (const c of children) {
      expect((await f.store.get(c.grantId))?.revokedAt).toBe(NOW.toISOString());
      expect(await code(svc.redeem(c.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
        'grant_revoked',
      );
    }
  });

  it('children requested while their parent is revoked never escape (5 ms audit latency)', async () => {
    const f = new Fakes();
    const svc = f.service();
    const parent = await issue(f, svc);
    f.auditDelayMs = 5;
    const child = (delayMs: number) =>
      new Promise((r) => setTimeout(r, delayMs)).then(() =>
        issue(f, svc, { parentGrantId: parent.grantId }),
      );
    const early = Array.from({ length: 20 }, (_, i) => child(i % 4));
    const revoke = new Promise((r) => setTimeout(r, 2)).then(() =>
      svc.revoke(parent.grantId, 'tok_op', NOW),
    );
    const late = Array.from({ length: 20 }, (_, i) => child(2 + (i % 6)));
    const results = await Promise.allSettled([...early, ...late]);
    await revoke;
    let issued = 0;
    for (const res of results) {
      if (res.status === 'rejected') {
        expect((res.reason as GrantorError).code).toBe('grant_parent_revoked');
        continue;
      }
      issued += 1;
      const stored = await f.store.get(res.value.grantId);
      expect(stored?.revokedAt, `child ${res.value.grantId} escaped the revoke`).not.toBeNull();
    }
    // Both sides of the race happened: some children before the revoke, some refused after.
    expect(issued).toBeGreaterThan(0);
    expect(issued).toBeLessThan(40);
  });

  it('redeem and child issuance refuse when any ancestor is revoked, not only the parent', async () => {
    const f = new Fakes();
    const svc = f.service();
    // A cascade cut short: the root is revoked, the branch below it was never rewritten.
    await f.store.create(record('gr_top', { revokedAt: NOW.toISOString() }));
    await f.store.create(record('gr_mid', { parent: 'gr_top', root: 'gr_top', depth: 1 }));
    await f.store.create(record('gr_leaf', { parent: 'gr_mid', root: 'gr_top', depth: 2 }));
    expect(await code(svc.redeem('gr_leaf', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
    expect(await code(issue(f, svc, { parentGrantId: 'gr_leaf' }))).toBe('grant_parent_revoked');
    expect(f.policyCalls).toHaveLength(0);
  });

  it('redeem refuses a grant whose chain is inconsistent: grant_lineage_invalid', async () => {
    const f = new Fakes();
    await f.store.create(record('gr_top'));
    await f.store.create(record('gr_leaf', { parent: 'gr_top', root: 'gr_top', depth: 0 }));
    expect(await code(f.service().redeem('gr_leaf', { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_lineage_invalid',
    );
  });

  it("a revoked runtime's grants and their descendants no longer redeem, cascade or not", async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    const child = await issue(f, svc, { parentGrantId: a.grantId });
    const r = f.runtimes.get(RT);
    if (r === undefined) throw new Error('no runtime');
    f.runtimes.set(RT, { ...r, state: 'revoked' });
    expect(await code(svc.redeem(a.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
    expect(await code(svc.redeem(child.grantId, { audience: 'gw_tickets' }, NOW, GW))).toBe(
      'grant_revoked',
    );
  });

  it('revokeRuntime revokes its live grants and their descendants, delegated ones too, audited with counts', async () => {
    const f = new Fakes();
    const svc = f.service();
    const a = await issue(f, svc);
    const b = await issue(f, svc);
    const redeemed = await issue(f, svc);
    await svc.redeem(redeemed.grantId, { audience: 'gw_tickets' }, NOW, GW);
    // A child held by another runtime under one of this runtime's grants.
    await f.store.create(
      record('gr_delegated', {
        runtimeId: 'rt_other',
        parent: a.grantId,
        root: a.grantId,
        depth: 1,
      }),
    );
    f.addRuntime('rt_other', {});
    // Another runtime's tree is not touched.
    await f.store.create(record('gr_foreign', { runtimeId: 'rt_other' }));
    const out = await svc.revokeRuntime(RT, 'tok_op', NOW);
    expect(out.revoked.sort()).toEqual(
      [a.grantId, b.grantId, redeemed.grantId, 'gr_delegated'].sort(),
    );
    expect((await f.store.get('gr_foreign'))?.revokedAt).toBeNull();
    expect(f.events.at(-1)).toMatchObject({
      type: 'grant.revoke',
      subject: RT,
      reasons: expect.arrayContaining(['by:tok_op', `runtime:${RT}`, 'count:4']) as unknown,
    });
    expect(out.auditSeq).toBe(f.seq - 1);
    // Nothing live left: no entry, nothing to record.
    expect(await svc.revokeRuntime(RT, 'tok_op', NOW)).toEqual({
      runtimeId: RT,
      revoked: [],
      auditSeq: null,
    });
  });
});

describe('revokeRuntimes: a trust change cascade (issue 18)', () => {
  it('40 runtimes with a live grant each: one entry within the log limits, with both counts', async () => {
    const f = new Fakes();
    const runtimes: string[] = [];
    for (let i = 0; i < 40; i += 1) {
      const id = `rt_many${String(i).padStart(2, '0')}`;
      runtimes.push(id);
      f.addRuntime(id, {});
      await f.store.create({
        grantId: `gr_${id}`,
        runtimeId: id,
        action: 'tickets.read',
        resource: 'ticket:1',
        audience: 'gw_tickets',
        parent: null,
        root: `gr_${id}`,
        depth: 0,
        iat: NOW.getTime() / 1000 - 10,
        exp: NOW.getTime() / 1000 + 50,
        auditSeq: 0,
        revokedAt: null,
        redemption: null,
      });
    }
    const out = await f
      .service()
      .revokeRuntimes(
        runtimes,
        { subject: 'refpolicy:fleet', reason: 'cause:refpolicy.disable' },
        'operator:tok_1',
        NOW,
      );
    expect(out.runtimes).toBe(40);
    expect(out.revoked).toHaveLength(40);
    const entry = f.events.at(-1);
    expect(entry).toMatchObject({ type: 'grant.revoke', subject: 'refpolicy:fleet' });
    expect(entry?.reasons?.length).toBeLessThanOrEqual(32);
    const runtimeIds = createHash('sha256')
      .update(JSON.stringify([...runtimes].sort()))
      .digest('hex');
    expect(entry?.reasons?.slice(0, 6)).toEqual([
      'by:operator:tok_1',
      'cause:refpolicy.disable',
      'runtimes:40',
      `runtimeIds:${runtimeIds}`,
      'count:40',
      expect.stringMatching(/^ids:[0-9a-f]{64}$/),
    ]);
    expect((await f.store.get('gr_rt_many07'))?.revokedAt).toBe(NOW.toISOString());
  });

  it('no live grant: the entry still counts the runtimes (their sessions ended)', async () => {
    const f = new Fakes();
    const out = await f
      .service()
      .revokeRuntimes([RT], { subject: 'ekca:sha256:aa', reason: 'cause:ekca.replace' }, 'x', NOW);
    expect(out).toMatchObject({ runtimes: 1, revoked: [] });
    expect(f.events.at(-1)?.reasons).toEqual(expect.arrayContaining(['runtimes:1', 'count:0']));
  });
});
