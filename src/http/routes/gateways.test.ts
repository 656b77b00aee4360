import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryOperators, type Operators } from '../../operators/index.js';
import type { CredentialEvent } from '../../operators/events.js';
import { buildApp, type App } from '../app.js';

let app: App;
let operators: Operators;
const events: CredentialEvent[] = [];
let op: { authorization: string };
let au: { authorization: string };

beforeAll(async () => {
  operators = createMemoryOperators({
    onCredentialEvent: (e) => {
      events.push(e);
      return Promise.resolve();
    },
  });
  app = await buildApp({ probes: [], operators });
  const bearer = async (role: 'operator' | 'auditor', actor: string) => ({
    authorization: `Bearer ${(await operators.tokens.create({ role, actor })).token}`,
  });
  op = await bearer('operator', 'olga');
  au = await bearer('auditor', 'ada');
});

afterAll(async () => {
  await app.close();
});

const codeOf = (res: { json: () => unknown }) =>
  (res.json() as { error: { code: string } }).error.code;

describe('gateway routes', () => {
  it('an operator enrolls a gateway: 201 with its token once (no-store), audited with who', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/gateways',
      headers: op,
      payload: { name: 'payments-gw', audiences: ['gw_payments'] },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json<{ token: string; gateway: { id: string; createdBy: string } }>();
    expect(body.token).toMatch(/^ggw_/);
    expect(body.gateway.createdBy).toMatch(/^olga:tok_/);
    expect(JSON.stringify(body.gateway)).not.toContain('secretHash');
    expect(events.at(-1)).toMatchObject({
      type: 'gateway.enrolled',
      subject: body.gateway.id,
      audiences: ['gw_payments'],
    });
    const list = await app.inject({ url: '/v1/gateways', headers: au });
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain(body.gateway.id);
    expect(list.body).not.toContain('secretHash');
    expect(list.body).not.toContain(body.token.slice(20));
    expect(await operators.gateways.authenticate(body.token)).toMatchObject({
      id: body.gateway.id,
    });
    const revoked = await app.inject({
      method: 'POST',
      url: `/v1/gateways/${body.gateway.id}/revoke`,
      headers: op,
    });
    expect(revoked.statusCode).toBe(200);
    const info = revoked.json<{ id: string; revokedBy?: string }>();
    expect(info.id).toBe(body.gateway.id);
    expect(info.revokedBy).toMatch(/^olga:tok_/);
    await expect(operators.gateways.authenticate(body.token)).rejects.toMatchObject({
      code: 'gateway_unauthenticated',
    });
  });

  const enroll = '/v1/gateways';
  it.each([
    ['no credential', 'none', enroll, 401, 'unauthenticated', { name: 'x', audiences: ['a'] }],
    ['an auditor', 'auditor', enroll, 403, 'forbidden', { name: 'x', audiences: ['a'] }],
    ['no audience', 'operator', enroll, 400, 'bad_request', { name: 'x', audiences: [] }],
    ['a spaced name', 'operator', enroll, 400, 'bad_request', { name: 'x y', audiences: ['a'] }],
    [
      'an unknown member',
      'operator',
      enroll,
      400,
      'bad_request',
      { name: 'x', audiences: ['a'], extra: true },
    ],
    [
      'an unknown gateway',
      'operator',
      `${enroll}/gw_0000000000000000/revoke`,
      404,
      'gateway_not_found',
    ],
  ] as const)(
    'refuses %s: %s POST %s → %i %s',
    async (_what, who, url, status, code, payload?: object) => {
      const headers = { none: {}, auditor: au, operator: op }[who];
      const res = await app.inject({
        method: 'POST',
        url,
        headers,
        ...(payload === undefined ? {} : { payload }),
      });
      expect(res.statusCode).toBe(status);
      expect(codeOf(res)).toBe(code);
    },
  );

  it('refuses a gateway token on an operator route: 401 unauthenticated', async () => {
    // A gateway token is no operator credential.
    const enrolled = await operators.gateways.enroll({ name: 'g', audiences: ['a'] }, 'cli');
    const gw = await app.inject({
      url: '/v1/gateways',
      headers: { authorization: `Bearer ${enrolled.token}` },
    });
    expect(gw.statusCode).toBe(401);
    expect(codeOf(gw)).toBe('unauthenticated');
  });
});
