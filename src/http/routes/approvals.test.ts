import { afterEach, describe, expect, it } from 'vitest';
import { Type } from 'typebox';
import { MemoryApprovalStore } from '../../operators/approval-store.memory.js';
import { Approvals } from '../../operators/approvals.js';
import { createServer } from '../app.js';
import { statusForCode } from '../error-status.js';
import { operatorApps } from '../testing/operator-apps.js';
import { approvalRoutes } from './approvals.js';

const apps = operatorApps();
afterEach(() => apps.closeAll());

async function setup() {
  const { app: a, bearer } = await apps.make();
  const approvals = new Approvals({ store: new MemoryApprovalStore() });
  const destroyed: string[] = [];
  await a.register(approvalRoutes, { approvals });
  // Stands in for the keys route (someone else's): destroy only with dual control.
  a.delete(
    '/v1/keys/:kid',
    {
      config: { role: 'key_custodian' },
      schema: { params: Type.Object({ kid: Type.String() }) },
    },
    async (request, reply) => {
      const { kid } = request.params;
      await approvals.perform('key.destroy', { kid }, () => {
        destroyed.push(kid);
        return Promise.resolve();
      });
      return reply.code(204).send();
    },
  );
  await a.ready();
  return {
    app: a,
    destroyed,
    kim: await bearer('key_custodian', 'kim'),
    kai: await bearer('key_custodian', 'kai'),
    kit: await bearer('key_custodian', 'kit'),
    olga: await bearer('operator', 'olga'),
    ada: await bearer('auditor', 'ada'),
  };
}

const codeOf = (res: { json: () => unknown }) =>
  (res.json() as { error: { code: string } }).error.code;

describe('approval routes', () => {
  it('refuses to register without the operator auth hook', async () => {
    const a = createServer();
    void a.register(approvalRoutes, {
      approvals: new Approvals({ store: new MemoryApprovalStore() }),
    });
    await expect(a.ready()).rejects.toThrow(/operatorAuth/);
  });

  it('destroys a key only with two distinct approvals, and only once', async () => {
    const s = await setup();
    const created = await s.app.inject({
      method: 'POST',
      url: '/v1/approvals',
      headers: s.kim,
      payload: { act: 'key.destroy', params: { kid: 'k1' } },
    });
    expect(created.statusCode).toBe(201);
    const id = created.json<{ id: string }>().id;
    const approve = (headers: Record<string, string>) =>
      s.app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers });
    const destroy = () => s.app.inject({ method: 'DELETE', url: '/v1/keys/k1', headers: s.kim });

    const own = await approve(s.kim);
    expect(codeOf(own)).toBe('approval_own_request');
    expect(own.statusCode).toBe(statusForCode('approval_own_request'));
    expect((await approve(s.kit)).statusCode).toBe(200);
    const one = await destroy();
    expect(codeOf(one)).toBe('approval_required');
    expect(one.statusCode).toBe(statusForCode('approval_required'));

    const dup = await approve(s.kit);
    expect(codeOf(dup)).toBe('approval_duplicate_actor');
    expect(dup.statusCode).toBe(statusForCode('approval_duplicate_actor'));

    const second = await approve(s.kai);
    expect(second.statusCode).toBe(200);
    expect(second.json<{ approvals: unknown[] }>().approvals).toHaveLength(2);
    expect((await destroy()).statusCode).toBe(204);
    expect(s.destroyed).toEqual(['k1']);

    const again = await destroy();
    expect(codeOf(again)).toBe('approval_reused');
    expect(s.destroyed).toEqual(['k1']);
  });

  it.each([
    ['no credential', 401, 'unauthenticated', undefined],
    ['an auditor', 403, 'forbidden', 'ada'],
    // An operator may use the route, but key.destroy needs custodians.
    ['an operator', 403, 'forbidden', 'olga'],
  ] as const)('refuses %s with %i %s', async (_who, status, code, person) => {
    const s = await setup();
    const res = await s.app.inject({
      method: 'POST',
      url: '/v1/approvals',
      ...(person === undefined ? {} : { headers: s[person] }),
      payload: { act: 'key.destroy', params: { kid: 'k1' } },
    });
    expect(res.statusCode).toBe(status);
    expect(codeOf(res)).toBe(code);
  });

  it('lists and reads approvals for auditors', async () => {
    const s = await setup();
    const created = await s.app.inject({
      method: 'POST',
      url: '/v1/approvals',
      headers: s.olga,
      payload: { act: 'refpolicy.disable', params: { policyId: 'p1' } },
    });
    const id = created.json<{ id: string }>().id;
    const list = await s.app.inject({ url: '/v1/approvals?limit=5', headers: s.ada });
    expect(list.statusCode).toBe(200);
    expect(list.json<{ approvals: { id: string }[] }>().approvals.map((a) => a.id)).toEqual([id]);
    const one = await s.app.inject({ url: `/v1/approvals/${id}`, headers: s.ada });
    expect(one.json<{ act: string }>().act).toBe('refpolicy.disable');
    const missing = await s.app.inject({
      url: '/v1/approvals/apr_0000000000000000',
      headers: s.ada,
    });
    expect(codeOf(missing)).toBe('approval_not_found');
    expect(missing.statusCode).toBe(statusForCode('approval_not_found'));
  });

  it('refuses unknown acts, extra members and nested params with 400', async () => {
    const s = await setup();
    for (const payload of [
      { act: 'key.export', params: {} },
      { act: 'key.destroy', params: { kid: 'k1' }, extra: 1 },
      { act: 'key.destroy', params: { kid: { nested: true } } },
      { act: 'key.destroy', params: { 'not a key!': 'x' } },
    ]) {
      const res = await s.app.inject({
        method: 'POST',
        url: '/v1/approvals',
        headers: s.kim,
        payload,
      });
      expect(res.statusCode).toBe(400);
      expect(codeOf(res)).toBe('bad_request');
    }
  });
});
