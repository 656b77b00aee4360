import { afterEach, describe, expect, it } from 'vitest';
import { Type } from 'typebox';
import { createMetrics } from '../../shared/metrics.js';
import { operatorApps } from '../testing/operator-apps.js';
import { metricsRoutes } from './metrics.js';
import { openApi, openApiPath } from './openapi.js';

const apps = operatorApps();
afterEach(() => apps.closeAll());

async function setup(role?: 'auditor') {
  const metrics = createMetrics({ defaultMetrics: false });
  const { app: a, tokens } = await apps.make();
  await a.register(openApi, { title: 'grantor', version: '1' });
  await a.register(metricsRoutes, role === undefined ? { metrics } : { metrics, role });
  a.post(
    '/v1/runtimes/:runtimeId/challenges',
    {
      config: { actor: 'runtime' },
      schema: {
        params: Type.Object({ runtimeId: Type.String() }),
        body: Type.Object({ hint: Type.Optional(Type.String()) }, { additionalProperties: false }),
        response: { 201: Type.Object({ nonce: Type.String() }) },
      },
    },
    async (_req, reply) => {
      await reply.code(201).send({ nonce: 'AAAA' });
    },
  );
  a.get(
    '/v1/audit/entries',
    {
      config: { role: 'auditor' },
      schema: {
        querystring: Type.Object({ from: Type.Integer(), limit: Type.Optional(Type.Integer()) }),
      },
    },
    () => [],
  );
  await a.ready();
  return { app: a, metrics, tokens };
}

describe('GET /metrics', () => {
  it('serves Prometheus text with request latency by route pattern', async () => {
    const s = await setup();
    await s.app.inject({ method: 'POST', url: '/v1/runtimes/rt_1/challenges', payload: {} });
    await s.app.inject({ url: '/nowhere/at/all' });
    const res = await s.app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toContain(
      'grantor_http_request_duration_seconds_count{method="POST",route="/v1/runtimes/:runtimeId/challenges",status="201"} 1',
    );
    expect(res.body).toContain('route="unmatched",status="404"');
    expect(res.body).not.toContain('rt_1');
  });

  it('can be protected with a role', async () => {
    const s = await setup('auditor');
    const res = await s.app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(401);
    const { token } = await s.tokens.create({ role: 'auditor', actor: 'ada' });
    const ok = await s.app.inject({
      url: '/metrics',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(ok.statusCode).toBe(200);
  });
});

describe('GET /openapi.json', () => {
  it('documents every route from its schemas, with roles and security', async () => {
    const s = await setup();
    const res = await s.app.inject({ url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<{
      openapi: string;
      paths: Record<string, Record<string, Record<string, unknown>>>;
    }>();
    expect(doc.openapi).toBe('3.1.0');
    const challenge = doc.paths['/v1/runtimes/{runtimeId}/challenges']?.post;
    expect(challenge?.parameters).toEqual([
      { name: 'runtimeId', in: 'path', required: true, schema: { type: 'string' } },
    ]);
    expect(challenge?.requestBody).toMatchObject({
      content: { 'application/json': { schema: { additionalProperties: false } } },
    });
    expect(challenge?.responses).toMatchObject({ 201: { description: 'Created' } });
    expect(challenge?.security).toEqual([]);
    expect(challenge?.['x-grantor-actor']).toBe('runtime');
    const audit = doc.paths['/v1/audit/entries']?.get;
    expect(audit?.['x-grantor-roles']).toEqual(['auditor']);
    expect(audit?.security).toEqual([{ bearerAuth: [] }, { mutualTLS: [] }]);
    expect(audit?.parameters).toEqual([
      { name: 'from', in: 'query', required: true, schema: { type: 'integer' } },
      { name: 'limit', in: 'query', required: false, schema: { type: 'integer' } },
    ]);
    expect(doc.paths['/metrics']?.get).toBeDefined();
    expect(res.body).not.toContain('~kind');
  });

  it('converts path parameters', () => {
    expect(openApiPath('/v1/grants/:grantId/redeem')).toBe('/v1/grants/{grantId}/redeem');
  });
});
