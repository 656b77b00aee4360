import { describe, expect, it } from 'vitest';
import { createFakeOperatorTokens } from '../../operators/token-store.memory.js';
import { createServer } from '../app.js';
import { operatorAuth, type OperatorRefusal } from './auth.js';

async function setup(onRefused: (r: OperatorRefusal) => Promise<void>) {
  const tokens = createFakeOperatorTokens();
  const app = createServer();
  await app.register(operatorAuth, { tokens, onRefused });
  app.get('/keys/:kid', { config: { role: 'key_custodian' } }, () => ({ ok: true }));
  app.post('/grants', { config: { actor: 'runtime' } }, () => ({ ok: true }));
  app.get('/public', { config: { public: true } }, () => ({ ok: true }));
  await app.ready();
  const operator = await tokens.create({ role: 'operator', actor: 'olga' });
  const custodian = await tokens.create({ role: 'key_custodian', actor: 'kim' });
  return { app, operator, custodian };
}

const codeOf = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;

describe('operatorAuth refusal reports', () => {
  it('reports each refusal with its reason, route pattern, address and identity, never the token', async () => {
    const seen: OperatorRefusal[] = [];
    const s = await setup((r) => {
      seen.push(r);
      return Promise.resolve();
    });
    const send = (url: string, authorization?: string, method: 'GET' | 'POST' = 'GET') =>
      s.app.inject({
        method,
        url,
        remoteAddress: '192.0.2.4',
        ...(authorization === undefined ? {} : { headers: { authorization } }),
      });
    await send('/keys/k1');
    await send('/keys/k1', 'Basic abc');
    await send('/keys/k1', `Bearer gop_${'0'.repeat(16)}${'A'.repeat(43)}`);
    await send('/keys/k1', `Bearer ${s.operator.token}`);
    await send('/grants', `Bearer ${s.operator.token}`, 'POST');
    // Served: not refusals.
    await send('/keys/k1', `Bearer ${s.custodian.token}`);
    await send('/public', 'Bearer whatever');
    await send('/grants', undefined, 'POST');
    expect(seen.map((r) => [r.reason, r.code, r.identity ?? null])).toEqual([
      ['credential_missing', 'unauthenticated', null],
      ['credential_invalid', 'unauthenticated', null],
      ['credential_invalid', 'unauthenticated', `tok_${'0'.repeat(16)}`],
      ['role_forbidden', 'forbidden', s.operator.info.id],
      ['operator_on_runtime_route', 'forbidden', s.operator.info.id],
    ]);
    expect(seen[0]).toMatchObject({ method: 'GET', route: '/keys/:kid', address: '192.0.2.4' });
    expect(JSON.stringify(seen)).not.toContain(s.operator.token);
    await s.app.close();
  });

  it('answers the refusal even when recording it fails', async () => {
    const s = await setup(() => Promise.reject(new Error('audit log down')));
    const res = await s.app.inject({ url: '/keys/k1' });
    expect(res.statusCode).toBe(401);
    expect(codeOf(res.body)).toBe('unauthenticated');
    await s.app.close();
  });
});
