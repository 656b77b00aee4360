import { afterEach, describe, expect, it } from 'vitest';
import { GrantorError } from '../../shared/errors.js';
import { MemoryGatewayStore } from '../../operators/gateway-store.memory.js';
import { GatewayRegistry } from '../../operators/gateways.js';
import { operatorApps } from '../testing/operator-apps.js';
import { requireActor, type OperatorAct } from './auth.js';

const apps = operatorApps();
afterEach(() => apps.closeAll());

async function setup() {
  const { app: a, tokens } = await apps.make();
  a.get('/audit', { config: { role: 'auditor' } }, (req) => ({ actor: requireActor(req) }));
  a.post('/keys', { config: { role: 'key_custodian' } }, (req) => ({ id: requireActor(req).id }));
  a.get('/runtimes', { config: { role: ['auditor', 'operator'] } }, (req) => ({
    role: requireActor(req).role,
  }));
  a.post('/grants', { config: { actor: 'runtime' } }, () => ({ ok: true }));
  a.get('/public', (req) => ({ actor: req.actor ?? null }));
  await a.ready();
  const auditor = (await tokens.create({ role: 'auditor', actor: 'alice' })).token;
  const operator = (await tokens.create({ role: 'operator', actor: 'olga' })).token;
  const custodian = (await tokens.create({ role: 'key_custodian', actor: 'kim' })).token;
  return { app: a, tokens, auditor, operator, custodian };
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const codeOf = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;

describe('operatorAuth', () => {
  it('lets the right role in and exposes the actor', async () => {
    const s = await setup();
    const res = await s.app.inject({ url: '/audit', headers: bearer(s.auditor) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      actor: { kind: 'operator', role: 'auditor', name: 'alice', credential: 'token' },
    });
    const many = await s.app.inject({ url: '/runtimes', headers: bearer(s.operator) });
    expect(many.json()).toEqual({ role: 'operator' });
  });

  it('answers 401 unauthenticated without a credential, before reading the body', async () => {
    const s = await setup();
    const none = await s.app.inject({ url: '/audit' });
    expect(none.statusCode).toBe(401);
    expect(codeOf(none.body)).toBe('unauthenticated');
    // The HEAD route Fastify adds for a GET carries the same role.
    expect((await s.app.inject({ method: 'HEAD', url: '/audit' })).statusCode).toBe(401);
    const malformedBody = await s.app.inject({
      method: 'POST',
      url: '/keys',
      headers: { 'content-type': 'application/json' },
      payload: '{"not json',
    });
    expect(malformedBody.statusCode).toBe(401);
    expect(codeOf(malformedBody.body)).toBe('unauthenticated');
  });

  it('answers 401 for an invalid, malformed or revoked token', async () => {
    const s = await setup();
    const forged = 'gop_' + '0'.repeat(16) + 'A'.repeat(43);
    for (const headers of [
      bearer(forged),
      { authorization: 'Basic YWxpY2U6c2VjcmV0' },
      { authorization: 'Bearer' },
    ]) {
      const res = await s.app.inject({ url: '/audit', headers });
      expect(res.statusCode).toBe(401);
      expect(codeOf(res.body)).toBe('unauthenticated');
    }
    const id = requireIdOf(
      await s.app.inject({ method: 'POST', url: '/keys', headers: bearer(s.custodian) }),
    );
    await s.tokens.revoke(id);
    const revoked = await s.app.inject({
      method: 'POST',
      url: '/keys',
      headers: bearer(s.custodian),
    });
    expect(revoked.statusCode).toBe(401);
    expect(codeOf(revoked.body)).toBe('unauthenticated');
  });

  it('answers 401 when a runtime credential is presented where an operator one is needed', async () => {
    const s = await setup();
    // A grant (JWS compact) or a runtime's session proof is not an operator credential.
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJydF8xIn0.c2ln';
    const res = await s.app.inject({ url: '/audit', headers: bearer(jws) });
    expect(res.statusCode).toBe(401);
    expect(codeOf(res.body)).toBe('unauthenticated');
  });

  it('answers 403 forbidden for a valid credential with the wrong role', async () => {
    const s = await setup();
    const res = await s.app.inject({ method: 'POST', url: '/keys', headers: bearer(s.auditor) });
    expect(res.statusCode).toBe(403);
    expect(codeOf(res.body)).toBe('forbidden');
    const custodian = await s.app.inject({ url: '/runtimes', headers: bearer(s.custodian) });
    expect(custodian.statusCode).toBe(403);
    expect(codeOf(custodian.body)).toBe('forbidden');
  });

  it('refuses operator credentials on runtime routes, with 403 forbidden', async () => {
    const s = await setup();
    const op = await s.app.inject({ method: 'POST', url: '/grants', headers: bearer(s.operator) });
    expect(op.statusCode).toBe(403);
    expect(codeOf(op.body)).toBe('forbidden');
    // Even an invalid operator token: the shape alone says "operator".
    const forged = 'gop_' + '0'.repeat(16) + 'A'.repeat(43);
    const f = await s.app.inject({ method: 'POST', url: '/grants', headers: bearer(forged) });
    expect(f.statusCode).toBe(403);
    const runtime = await s.app.inject({ method: 'POST', url: '/grants' });
    expect(runtime.statusCode).toBe(200);
  });

  it('leaves public routes open and ignores credentials there', async () => {
    const s = await setup();
    const res = await s.app.inject({ url: '/public', headers: bearer('garbage') });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ actor: null });
  });

  it('refuses at start-up a route with an unknown role or both role and actor', async () => {
    const { app: a } = await apps.make();
    expect(() =>
      a.get('/x', { config: { role: 'root' as unknown as 'auditor' } }, () => ({})),
    ).toThrow(/unknown config.role/);
    expect(() =>
      a.get('/y', { config: { role: 'auditor', actor: 'runtime' } }, () => ({})),
    ).toThrow(/exclude/);
    expect(() => a.get('/z', { config: { role: [] } }, () => ({}))).toThrow(/unknown config.role/);
  });
});

describe('gateway routes', () => {
  // A route declared for gateways is closed by the plugin itself: it carries no hook.
  async function gatewaySetup(withRegistry = true) {
    const gateways = new GatewayRegistry(new MemoryGatewayStore());
    const { app: a, tokens } = await apps.make({}, withRegistry ? { gateways } : {});
    // The handler does not check either: only the declaration protects it.
    a.get('/feed', { config: { actor: 'gateway' } }, (req) => ({ id: req.gateway?.id ?? null }));
    await a.ready();
    const enrolled = await gateways.enroll({ name: 'gw', audiences: ['payments'] }, 'cli');
    const operator = (await tokens.create({ role: 'operator', actor: 'olga' })).token;
    return { app: a, gateways, enrolled, operator };
  }

  it('refuses a gateway route without a valid gateway token, with no hook on the route', async () => {
    const s = await gatewaySetup();
    for (const headers of [{}, bearer('ggw_' + '0'.repeat(16) + 'A'.repeat(43)), bearer('x')]) {
      const res = await s.app.inject({ url: '/feed', headers });
      expect(res.statusCode).toBe(401);
      expect(codeOf(res.body)).toBe('gateway_unauthenticated');
    }
    const op = await s.app.inject({ url: '/feed', headers: bearer(s.operator) });
    expect(op.statusCode).toBe(403);
    expect(codeOf(op.body)).toBe('forbidden');
    const ok = await s.app.inject({ url: '/feed', headers: bearer(s.enrolled.token) });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ id: s.enrolled.gateway.id });
    await s.gateways.revoke(s.enrolled.gateway.id, 'cli');
    const revoked = await s.app.inject({ url: '/feed', headers: bearer(s.enrolled.token) });
    expect(codeOf(revoked.body)).toBe('gateway_unauthenticated');
  });

  it('refuses every gateway call when no registry is configured (fail closed)', async () => {
    const s = await gatewaySetup(false);
    const res = await s.app.inject({ url: '/feed', headers: bearer(s.enrolled.token) });
    expect(res.statusCode).toBe(401);
    expect(codeOf(res.body)).toBe('gateway_unauthenticated');
  });
});

describe('operatorAuth options', () => {
  it('refuses at start-up an undeclared route where declarations are required', async () => {
    const { app: a } = await apps.make({}, { requireDeclaration: /^\/v1\// });
    expect(() => a.get('/v1/runtimes/:id', () => ({}))).toThrow(/declare config.role/);
    a.get('/v1/jwks', { config: { public: true } }, () => ({}));
    a.get('/v1/a', { config: { role: 'auditor' } }, () => ({}));
    a.post('/v1/g', { config: { actor: 'runtime' } }, () => ({}));
    a.get('/healthz', () => ({}));
    expect(() => a.get('/v1/b', { config: { role: 'auditor', public: true } }, () => ({}))).toThrow(
      /exclude/,
    );
  });

  it('records every operator act, with its actor, before the handler runs', async () => {
    const acts: OperatorAct[] = [];
    let handled = 0;
    let auditUp = true;
    const { app: a, tokens } = await apps.make(
      {},
      {
        onOperatorAct: (act) => {
          if (!auditUp) return Promise.reject(new GrantorError('audit_unavailable', 'down'));
          acts.push(act);
          return Promise.resolve();
        },
      },
    );
    a.post('/v1/keys/:kid/retire', { config: { role: 'key_custodian' } }, () => {
      handled++;
      return { ok: true };
    });
    a.get('/public', () => ({ ok: true }));
    await a.ready();
    const { token, info } = await tokens.create({ role: 'key_custodian', actor: 'kim' });
    const headers = { authorization: `Bearer ${token}` };
    const ok = await a.inject({ method: 'POST', url: '/v1/keys/k1/retire', headers });
    expect(ok.statusCode).toBe(200);
    expect(acts).toHaveLength(1);
    expect(acts[0]).toMatchObject({
      actor: { id: info.id, name: 'kim', role: 'key_custodian' },
      method: 'POST',
      route: '/v1/keys/:kid/retire',
      params: { kid: 'k1' },
    });
    await a.inject({ url: '/public' });
    expect(acts).toHaveLength(1);
    auditUp = false;
    const down = await a.inject({ method: 'POST', url: '/v1/keys/k2/retire', headers });
    expect(codeOf(down.body)).toBe('audit_unavailable');
    expect(handled).toBe(1);
  });
});

function requireIdOf(res: { statusCode: number; json: () => unknown }): string {
  expect(res.statusCode).toBe(200);
  return (res.json() as { id: string }).id;
}
