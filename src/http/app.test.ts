import { describe, expect, it } from 'vitest';
import { Type } from 'typebox';
import { GrantorError, type ErrorCode } from '../shared/errors.js';
import type { ReadinessProbe } from '../shared/readiness.js';
import { buildApp, createServer } from './app.js';
import { buildDegradedApp } from './server.js';

function probe(
  name: string,
  code: ErrorCode,
  result: () => Promise<{ ok: true } | { ok: false; reason: string }>,
): ReadinessProbe {
  return { name, code, check: result };
}

describe('health routes', () => {
  it('answers /healthz and /readyz when every probe passes', async () => {
    const app = await buildApp({
      probes: [probe('tpm', 'tpm_unavailable', () => Promise.resolve({ ok: true }))],
    });
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', checks: { tpm: { ok: true } } });
    await app.close();
  });

  it('answers 503 naming every component that is down, coded by the first', async () => {
    const app = await buildApp({
      probes: [
        probe('tpm', 'tpm_unavailable', () => Promise.resolve({ ok: true })),
        probe('hsm', 'hsm_unavailable', () => Promise.reject(new Error('CKR_PIN_INCORRECT'))),
        probe('audit', 'audit_unavailable', () =>
          Promise.resolve({ ok: false, reason: 'store closed' }),
        ),
      ],
    });
    const res = await app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    const body = res.json<{
      error: { code: string; message: string; details: { down: string[] } };
    }>();
    expect(body.error.code).toBe('hsm_unavailable');
    expect(body.error.details.down).toEqual(['hsm', 'audit']);
    expect(body.error.message).toContain('hsm, audit');
    await app.close();
  });

  it('treats a probe that never answers as down', async () => {
    const app = await buildApp({
      probes: [probe('tpm', 'tpm_unavailable', () => new Promise(() => undefined))],
    });
    // runProbes has a 3 s deadline; the probe never settles.
    const res = await app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('tpm_unavailable');
    await app.close();
  });
});

describe('error handling', () => {
  async function appWithRoutes() {
    const app = await buildApp({ probes: [] });
    return app;
  }

  it('maps typed errors through the table and hides 5xx internals', async () => {
    const f = createServer();
    f.get('/deny', () => {
      throw new GrantorError('policy_denied', 'not allowed: tickets only', {
        details: { reasons: ['r1'] },
      });
    });
    f.get('/hsm', () => {
      throw new GrantorError('hsm_unavailable', 'C_Sign failed on slot 0x7731 CKR_DEVICE_ERROR');
    });
    f.get('/boom', () => {
      throw new Error('secret internal path /var/lib/x');
    });
    const deny = await f.inject({ url: '/deny' });
    expect(deny.statusCode).toBe(403);
    expect(deny.json()).toEqual({
      error: {
        code: 'policy_denied',
        message: 'not allowed: tickets only',
        details: { reasons: ['r1'] },
      },
    });
    const hsm = await f.inject({ url: '/hsm' });
    expect(hsm.statusCode).toBe(503);
    expect(hsm.body).not.toContain('CKR_DEVICE_ERROR');
    expect(hsm.json<{ error: { code: string } }>().error.code).toBe('hsm_unavailable');
    const boom = await f.inject({ url: '/boom' });
    expect(boom.statusCode).toBe(500);
    expect(boom.body).not.toContain('/var/lib/x');
    await f.close();
  });

  it.each([
    ['a wrong type', { a: 1 }],
    ['an unknown member', { a: 'x', b: 2 }],
    ['a __proto__ member', '{"a":"x","__proto__":{"admin":true}}'],
    ['malformed JSON', '{"a":'],
  ])('refuses a body with %s: 400 bad_request', async (_what, payload) => {
    const f = createServer();
    f.post(
      '/echo',
      { schema: { body: Type.Object({ a: Type.String() }, { additionalProperties: false }) } },
      (req) => req.body,
    );
    const res = await f.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('bad_request');
    await f.close();
  });

  it('answers unknown routes with the error shape', async () => {
    const app = await appWithRoutes();
    const res = await app.inject({ url: '/nope?x=1' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: 'not_found', message: 'no route GET /nope' } });
    await app.close();
  });
});

describe('bodies that are not Unicode text', () => {
  it('refuses a JSON string with a lone surrogate (escaped in the body) before any handler: 400', async () => {
    const app = createServer();
    let handled = 0;
    app.post('/echo', { config: { public: true } }, (request) => {
      handled += 1;
      return { got: request.body };
    });
    const send = (raw: string) =>
      app.inject({
        method: 'POST',
        url: '/echo',
        headers: { 'content-type': 'application/json' },
        payload: raw,
      });
    for (const raw of ['{"a":"\\ud800"}', '{"a":["x","\\udc00"]}', '{"\\ud83d":1}']) {
      const res = await send(raw);
      expect(res.statusCode, raw).toBe(400);
      expect(res.json()).toMatchObject({ error: { code: 'bad_request' } });
    }
    expect(handled).toBe(0);
    // A pair, escaped or not, and the escape spelt out as text are fine.
    for (const raw of ['{"a":"\\ud83d\\ude00"}', '{"a":"😀"}', '{"a":"\\\\ud800"}']) {
      expect((await send(raw)).statusCode, raw).toBe(200);
    }
    expect(handled).toBe(3);
    await app.close();
  });
});

describe('metrics while degraded', () => {
  it('serves /metrics under a start-up lockdown, with the failed component not ready', async () => {
    const app = await buildDegradedApp(new GrantorError('hsm_pin_incorrect', 'CKR_PIN_INCORRECT'));
    expect((await app.inject({ url: '/v1/keys' })).statusCode).toBe(503);
    const res = await app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('grantor_ready{component="hsm"} 0');
    expect(res.body).toMatch(/^grantor_build_info\{version="[^"]+",node="[^"]+"\} 1$/m);
    // A lookalike path is not exempt from the lockdown.
    expect((await app.inject({ url: '/metrics/' })).statusCode).toBe(503);
    await app.close();
  });

  it('reports each probe as grantor_ready{component}, as the last /readyz found it', async () => {
    let probed = 0;
    const app = await buildApp({
      probes: [
        probe('tpm', 'tpm_unavailable', () => {
          probed += 1;
          return Promise.resolve({ ok: true });
        }),
        probe('audit', 'audit_unavailable', () => Promise.resolve({ ok: false, reason: 'x' })),
      ],
    });
    // Started: every component opened. A scrape probes nothing.
    const atStart = (await app.inject({ url: '/metrics' })).body;
    expect(atStart).toContain('grantor_ready{component="audit"} 1');
    expect(probed).toBe(0);
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(503);
    const text = (await app.inject({ url: '/metrics' })).body;
    expect(text).toContain('grantor_ready{component="tpm"} 1');
    expect(text).toContain('grantor_ready{component="audit"} 0');
    await app.close();
  });
});
