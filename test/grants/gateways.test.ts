/**
 * Issue 18, items 1 and 5, on the real parts (test/grants/rig.ts: swtpm, SoftHSM2, Cedar
 * over policies/default, the anchored audit log): redeem and outcome need an enrolled
 * gateway; a gateway redeems only for its own audiences; every redeem and outcome entry
 * names the gateway; the outcome is reported once, by the redeeming gateway only, audited
 * and shown in lineage. Each refusal asserts its code.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { staticKeySource, verifyGrant } from '../../src/gateway/index.js';
import { ISSUER, TICKET_READ, codeOf, sessionRequest, useRig } from './rig.js';

const t = useRig('support-gateways', 'support');
/** Enrolled for gw_payments only. */
let payGateway: { id: string; token: string };

beforeAll(async () => {
  const enrolled = await t.rig.gateways.enroll(
    { name: 'payments-only', audiences: ['gw_payments'] },
    'cli',
  );
  payGateway = { id: enrolled.gateway.id, token: enrolled.token };
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function ticketGrant(): Promise<string> {
  const res = await t.rig.app.inject({
    method: 'POST',
    url: '/v1/grants',
    payload: sessionRequest(t.attested),
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ grantId: string }>().grantId;
}

const redeem = (grantId: string, headers: Record<string, string>, audience = 'gw_tickets') =>
  t.rig.app.inject({
    method: 'POST',
    url: `/v1/grants/${grantId}/redeem`,
    headers,
    payload: { audience },
  });

const outcome = (grantId: string, headers: Record<string, string>, payload: object) =>
  t.rig.app.inject({ method: 'POST', url: `/v1/grants/${grantId}/outcome`, headers, payload });

async function entriesOf(subject: string, type: string) {
  return (await t.rig.audit.entries(0, 100_000)).filter(
    (e) => e.subject === subject && e.type === type,
  );
}

describe('gateways are enrolled parties', () => {
  it('redeem without a gateway credential: 401 gateway_unauthenticated, grant untouched', async () => {
    const grantId = await ticketGrant();
    const cases: Record<string, string>[] = [
      {},
      { authorization: 'Basic abc' },
      bearer(`ggw_${'0'.repeat(16)}${'A'.repeat(43)}`),
      bearer(t.rig.gateway.token.slice(0, -1) + (t.rig.gateway.token.endsWith('A') ? 'B' : 'A')),
      bearer('a-grant-or-anything'),
    ];
    for (const headers of cases) {
      const res = await redeem(grantId, headers);
      expect(res.statusCode).toBe(401);
      expect(codeOf(res.body)).toBe('gateway_unauthenticated');
    }
    expect(await entriesOf(grantId, 'grant.redeem')).toEqual([]);
    expect((await redeem(grantId, t.rig.gateway.headers)).statusCode).toBe(200);
  });

  it('a gateway redeems only for its own audiences: 403 gateway_audience_forbidden', async () => {
    const grantId = await ticketGrant();
    const other = await redeem(grantId, bearer(payGateway.token), 'gw_tickets');
    expect(other.statusCode).toBe(403);
    expect(codeOf(other.body)).toBe('gateway_audience_forbidden');
    // Its own audience, someone else's grant: the grant's audience decides.
    const mismatch = await redeem(grantId, bearer(payGateway.token), 'gw_payments');
    expect(mismatch.statusCode).toBe(403);
    expect(codeOf(mismatch.body)).toBe('grant_audience_mismatch');
    // Neither burned the grant: its own gateway still redeems it.
    expect((await redeem(grantId, t.rig.gateway.headers)).statusCode).toBe(200);
  });

  it('every redeem entry names the gateway', async () => {
    const grantId = await ticketGrant();
    expect((await redeem(grantId, t.rig.gateway.headers)).statusCode).toBe(200);
    const [entry, ...more] = await entriesOf(grantId, 'grant.redeem');
    expect(more).toEqual([]);
    expect(entry?.reasons).toEqual([`gateway:${t.rig.gateway.id}`]);
  });

  it('a revoked gateway is refused from the next request on (401), enroll and revoke audited', async () => {
    const enrolled = await t.rig.gateways.enroll(
      { name: 'short-lived', audiences: ['gw_tickets'] },
      'cli',
    );
    const a = await ticketGrant();
    expect((await redeem(a, bearer(enrolled.token))).statusCode).toBe(200);
    await t.rig.gateways.revoke(enrolled.gateway.id, 'cli');
    const b = await ticketGrant();
    const res = await redeem(b, bearer(enrolled.token));
    expect(res.statusCode).toBe(401);
    expect(codeOf(res.body)).toBe('gateway_unauthenticated');
    const id = enrolled.gateway.id;
    expect(await entriesOf(id, 'gateway.enrolled')).toEqual([
      expect.objectContaining({ reasons: ['by:cli', 'audience:gw_tickets'] }),
    ]);
    expect(await entriesOf(id, 'gateway.revoked')).toHaveLength(1);
  });
});

describe('execution outcomes', () => {
  const digest = 'cd'.repeat(32);

  it('reported once by the redeeming gateway, audited, shown in lineage', async () => {
    const grantId = await ticketGrant();
    const early = await outcome(grantId, t.rig.gateway.headers, { outcome: 'succeeded' });
    expect(early.statusCode).toBe(409);
    expect(codeOf(early.body)).toBe('grant_not_redeemed');
    expect((await redeem(grantId, t.rig.gateway.headers)).statusCode).toBe(200);
    const intruder = await outcome(grantId, bearer(payGateway.token), { outcome: 'failed' });
    expect(intruder.statusCode).toBe(403);
    expect(codeOf(intruder.body)).toBe('grant_outcome_forbidden');
    const anonymous = await outcome(grantId, {}, { outcome: 'failed' });
    expect(anonymous.statusCode).toBe(401);
    expect(codeOf(anonymous.body)).toBe('gateway_unauthenticated');
    const first = await outcome(grantId, t.rig.gateway.headers, {
      outcome: 'succeeded',
      resultDigest: digest,
    });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({ grantId, outcome: 'succeeded' });
    const again = await outcome(grantId, t.rig.gateway.headers, { outcome: 'aborted' });
    expect(again.statusCode).toBe(409);
    expect(codeOf(again.body)).toBe('grant_outcome_recorded');
    expect(await entriesOf(grantId, 'grant.outcome')).toEqual([
      expect.objectContaining({
        decision: 'succeeded',
        reasons: [`gateway:${t.rig.gateway.id}`, `result:${digest}`],
      }),
    ]);
    const lineage = await t.rig.app.inject({ url: `/v1/grants/${grantId}/lineage` });
    expect(lineage.json()).toMatchObject({
      grant: {
        state: 'redeemed',
        redeemedBy: t.rig.gateway.id,
        execution: { gateway: t.rig.gateway.id, outcome: 'succeeded', resultDigest: digest },
      },
    });
  });

  it('refuses an unknown grant (404) and bad bodies (400)', async () => {
    const unknown = await outcome('gr_nope', t.rig.gateway.headers, { outcome: 'failed' });
    expect(unknown.statusCode).toBe(404);
    expect(codeOf(unknown.body)).toBe('grant_not_found');
    for (const payload of [
      { outcome: 'maybe' },
      { outcome: 'failed', resultDigest: 'XY'.repeat(32) },
      { outcome: 'failed', extra: 1 },
      {},
    ]) {
      const res = await outcome('gr_nope', t.rig.gateway.headers, payload);
      expect(res.statusCode).toBe(400);
      expect(codeOf(res.body)).toBe('bad_request');
    }
  });

  it('aborted is an outcome too; no result digest needed', async () => {
    const grantId = await ticketGrant();
    expect((await redeem(grantId, t.rig.gateway.headers)).statusCode).toBe(200);
    const res = await outcome(grantId, t.rig.gateway.headers, { outcome: 'aborted' });
    expect(res.statusCode).toBe(200);
    const [entry] = await entriesOf(grantId, 'grant.outcome');
    expect(entry).toMatchObject({ decision: 'aborted', reasons: [`gateway:${t.rig.gateway.id}`] });
  });
});

describe('the next grant key is published before it signs', () => {
  it('a gateway that cached the JWKS before a rotation verifies a grant signed after it', async () => {
    // The gateway fetched the set once and never fetches it again.
    const cached = await staticKeySource(
      (await t.rig.app.inject({ url: '/.well-known/jwks.json' })).body,
    );
    const before = t.rig.keys.activeGrantKid();
    await t.rig.keys.rotate('grant');
    expect(t.rig.keys.activeGrantKid()).not.toBe(before);
    const res = await t.rig.app.inject({
      method: 'POST',
      url: '/v1/grants',
      payload: sessionRequest(t.attested),
    });
    expect(res.statusCode, res.body).toBe(201);
    const verified = await verifyGrant(res.json<{ grant: string }>().grant, {
      issuer: ISSUER,
      audience: 'gw_tickets',
      keys: cached,
      execution: TICKET_READ,
    });
    expect(verified.kid).toBe(t.rig.keys.activeGrantKid());
  });
});
