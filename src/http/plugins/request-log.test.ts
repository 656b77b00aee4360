import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Type } from 'typebox';
import fc from 'fast-check';
import { createLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { GrantorError } from '../../shared/errors.js';
import { operatorApps } from '../testing/operator-apps.js';
import { healthRoutes } from '../routes/health.js';
import { metricsRoutes } from './metrics.js';
import { errorCodeOfBody, requestIdGenerator } from './request-log.js';

interface Line {
  level: number;
  time: unknown;
  msg: string;
  reqId?: string;
  method?: string;
  route?: string;
  path?: string;
  status?: number;
  code?: string;
  actor?: string;
  credential?: string;
  ms?: number;
}

const apps = operatorApps();
afterEach(() => apps.closeAll());

/** The app's log stream, line by line (pino JSON), at debug. */
async function setup() {
  const lines: Line[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (l !== '') lines.push(JSON.parse(l) as Line);
      }
      cb();
    },
  });
  const { app: a, tokens } = await apps.make({
    logger: createLogger('debug', stream),
    bodyLimit: 1024,
  });
  await a.register(metricsRoutes, { metrics: createMetrics({ defaultMetrics: false }) });
  await a.register(healthRoutes, { probes: [] });
  a.get('/v1/keys/:kid', { config: { role: 'key_custodian' } }, () => ({ ok: true }));
  a.post(
    '/v1/runtimes/:runtimeId/challenges',
    {
      config: { actor: 'runtime' },
      schema: { params: Type.Object({ runtimeId: Type.String() }) },
    },
    () => ({ nonce: 'AAAA' }),
  );
  a.get('/v1/down', { config: { public: true } }, () => {
    throw new GrantorError('hsm_unavailable', 'CKR_DEVICE_ERROR on slot 0');
  });
  await a.ready();
  const custodian = await tokens.create({ role: 'key_custodian', actor: 'kim' });
  const requests = () => lines.filter((l) => l.msg === 'request');
  return { app: a, lines, requests, custodian };
}

describe('request log', () => {
  it('writes one line per request with id, method, route, status, actor and latency, never the token', async () => {
    const s = await setup();
    const res = await s.app.inject({
      url: '/v1/keys/k1',
      headers: { authorization: `Bearer ${s.custodian.token}` },
    });
    expect(res.statusCode).toBe(200);
    const [line, ...more] = s.requests();
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      level: 30,
      reqId: res.headers['x-request-id'],
      method: 'GET',
      route: '/v1/keys/:kid',
      status: 200,
      actor: 'operator:kim',
      credential: s.custodian.info.id,
    });
    expect(typeof line?.ms).toBe('number');
    // ISO 8601 times, not epoch milliseconds.
    expect(line?.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(JSON.stringify(s.lines)).not.toContain(s.custodian.token);
    // Fastify's own "incoming request" / "request completed" pair is gone.
    expect(s.lines.filter((l) => l.msg !== 'request')).toEqual([]);
  });

  it('logs refusals (401, 403, 404, 413) with their error code', async () => {
    const s = await setup();
    const missing = await s.app.inject({ url: '/v1/keys/k1' });
    const wrongActor = await s.app.inject({
      method: 'POST',
      url: '/v1/runtimes/rt_9/challenges',
      headers: { authorization: `Bearer ${s.custodian.token}` },
      payload: {},
    });
    const nowhere = await s.app.inject({ url: '/v1/nowhere?nonce=abc' });
    const big = await s.app.inject({
      method: 'POST',
      url: '/v1/runtimes/rt_9/challenges',
      payload: { pad: 'x'.repeat(4096) },
    });
    expect([missing, wrongActor, nowhere, big].map((r) => r.statusCode)).toEqual([
      401, 403, 404, 413,
    ]);
    expect(s.requests().map((l) => [l.status, l.code, l.route, l.actor])).toEqual([
      [401, 'unauthenticated', '/v1/keys/:kid', undefined],
      [403, 'forbidden', '/v1/runtimes/:runtimeId/challenges', 'runtime:rt_9'],
      [404, 'not_found', 'unmatched', undefined],
      [413, 'payload_too_large', '/v1/runtimes/:runtimeId/challenges', 'runtime:rt_9'],
    ]);
    // An unmatched request names its path, without the query.
    expect(s.requests()[2]?.path).toBe('/v1/nowhere');
    expect(JSON.stringify(s.lines)).not.toContain(s.custodian.token);
  });

  it('logs a failure of the appliance at warn with its code', async () => {
    const s = await setup();
    const res = await s.app.inject({ url: '/v1/down' });
    expect(res.statusCode).toBe(503);
    const line = s.requests()[0];
    expect(line).toMatchObject({ level: 40, status: 503, code: 'hsm_unavailable' });
  });

  it('logs probes and scrapes at debug only', async () => {
    const s = await setup();
    for (const url of ['/healthz', '/readyz', '/metrics']) {
      expect((await s.app.inject({ url })).statusCode).toBe(200);
    }
    expect(s.requests().map((l) => [l.route, l.level])).toEqual([
      ['/healthz', 20],
      ['/readyz', 20],
      ['/metrics', 20],
    ]);
  });

  it('takes a well-formed X-Request-Id and echoes it; generates one otherwise', async () => {
    const s = await setup();
    const taken = await s.app.inject({
      url: '/healthz',
      headers: { 'x-request-id': '7f3c-proxy:42' },
    });
    expect(taken.headers['x-request-id']).toBe('7f3c-proxy:42');
    const ids = new Set<string>();
    for (const bad of ['a b', 'x'.repeat(129), '"quoted"', 'line\u2028break', '']) {
      const res = await s.app.inject({ url: '/healthz', headers: { 'x-request-id': bad } });
      const id = String(res.headers['x-request-id']);
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);
      ids.add(id);
    }
    // Refusals are answered with the id too.
    const refused = await s.app.inject({ url: '/v1/keys/k1' });
    ids.add(String(refused.headers['x-request-id']));
    expect(ids.size).toBe(6);
    expect(s.requests().map((l) => l.reqId)).toEqual([
      '7f3c-proxy:42',
      ...[...ids].slice(0, 5),
      String(refused.headers['x-request-id']),
    ]);
  });
});

describe('requestIdGenerator', () => {
  it('draws a fresh prefix per server, so ids do not repeat across restarts', () => {
    const req = { headers: {} };
    const a = requestIdGenerator();
    const b = requestIdGenerator();
    expect(a(req)).not.toBe(b(req));
    expect(a(req)).not.toBe(a(req));
  });

  it('takes only well-formed ids, whatever the header holds', () => {
    const gen = requestIdGenerator('p');
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (value) => {
        const id = gen({ headers: { 'x-request-id': value } });
        expect(id).toMatch(/^[A-Za-z0-9._:+=/-]{1,128}$/);
        if (id !== value) expect(id).toMatch(/^p-[0-9a-z]+$/);
      }),
    );
  });
});

describe('errorCodeOfBody', () => {
  it('reads the contract error code and nothing else', () => {
    expect(errorCodeOfBody('{"error":{"code":"policy_denied","message":"no"}}')).toBe(
      'policy_denied',
    );
    expect(errorCodeOfBody('{"error":{"code":"Not A Code"}}')).toBeUndefined();
    expect(errorCodeOfBody('{"error":"x"}')).toBeUndefined();
    expect(errorCodeOfBody('not json')).toBeUndefined();
    expect(errorCodeOfBody(undefined)).toBeUndefined();
    fc.assert(
      fc.property(fc.string(), (s) => {
        const code = errorCodeOfBody(s);
        expect(code === undefined || /^[a-z0-9_]{1,64}$/.test(code)).toBe(true);
      }),
    );
  });
});
