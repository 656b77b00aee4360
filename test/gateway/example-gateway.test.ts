/**
 * The example gateway end to end, in process: grants from a stand-in appliance (ES256 key,
 * JWKS and first-call-wins redemption on 127.0.0.1), requests through `app.inject()`.
 */
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGatewayExample, type GatewayExample } from '../../examples/gateway/app.js';
import { popSigningInput } from '../../src/gateway/index.js';
import {
  FakeAppliance,
  ISSUER,
  b64url,
  ecKey,
  es256,
  type EcKey,
  type Execution,
} from './appliance.js';

const AUDIENCE = 'gw_payments';
const TRANSFER = { from: 'acct:1234', to: 'acct:9876', amountCents: 2500, currency: 'EUR' };

let appliance: FakeAppliance;
let gateway: GatewayExample;

function grantFor(execution: Execution, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  return appliance.mint({ ...appliance.claims(now, AUDIENCE, execution), ...claims });
}

const transferGrant = (claims: Record<string, unknown> = {}): string =>
  grantFor({ action: 'payments.transfer', resource: TRANSFER.from, parameters: TRANSFER }, claims);

function transfer(grant: string | undefined, body: unknown = TRANSFER) {
  return gateway.app.inject({
    method: 'POST',
    url: '/payments/transfer',
    headers: grant === undefined ? {} : { authorization: `Grant ${grant}` },
    payload: body as Record<string, unknown>,
  });
}

beforeAll(async () => {
  appliance = await FakeAppliance.start();
});

afterAll(async () => {
  await appliance.close();
});

beforeEach(async () => {
  appliance.redeemStatus = undefined;
  // The grant checks without a proof; proof of possession (on by default) has its own suite.
  gateway = await createGatewayExample({
    issuer: ISSUER,
    audience: AUDIENCE,
    applianceUrl: appliance.url,
    requireProofOfPossession: false,
  });
});

afterEach(async () => {
  await gateway.app.close();
});

describe('the example gateway', () => {
  it('reads a ticket with a tickets.read grant, once', async () => {
    const body = { ticketId: 'T-42' };
    const grant = grantFor({ action: 'tickets.read', resource: 'ticket:T-42', parameters: body });
    const read = () =>
      gateway.app.inject({
        method: 'POST',
        url: '/tickets/read',
        headers: { authorization: `Grant ${grant}` },
        payload: body,
      });
    const first = await read();
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ id: 'T-42', status: 'open' });
    const replay = await read();
    expect(replay.statusCode).toBe(409);
    expect(replay.json()).toMatchObject({ error: { code: 'grant_already_redeemed' } });
  });

  it('moves money once and refuses the replay', async () => {
    const grant = transferGrant();
    const first = await transfer(grant);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ transferId: 'tr_1', status: 'executed' });
    const replay = await transfer(grant);
    expect(replay.statusCode).toBe(409);
    expect(replay.json()).toMatchObject({ error: { code: 'grant_already_redeemed' } });
    expect(gateway.transfers).toHaveLength(1);
    expect(gateway.transfers[0]).toMatchObject({ ...TRANSFER, runtimeId: 'rt_agent7' });
  });

  it('executes a grant submitted twice concurrently exactly once', async () => {
    const grant = transferGrant();
    const answers = await Promise.all([transfer(grant), transfer(grant), transfer(grant)]);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409, 409]);
    expect(gateway.transfers).toHaveLength(1);
  });

  it('refuses a grant for another action, without redeeming it', async () => {
    const grant = grantFor({
      action: 'tickets.read',
      resource: TRANSFER.from,
      parameters: TRANSFER,
    });
    const answer = await transfer(grant);
    expect(answer.statusCode).toBe(403);
    expect(answer.json()).toMatchObject({ error: { code: 'grant_action_mismatch' } });
    expect(gateway.transfers).toHaveLength(0);
    expect(appliance.redeemed.has(decodeJwt(grant).jti ?? '')).toBe(false);
  });

  it('refuses a grant for another audience', async () => {
    const answer = await transfer(transferGrant({ aud: 'gw_tickets' }));
    expect(answer.statusCode).toBe(403);
    expect(answer.json()).toMatchObject({ error: { code: 'grant_audience_mismatch' } });
  });

  it('refuses a grant for other parameters', async () => {
    const answer = await transfer(transferGrant(), { ...TRANSFER, amountCents: 250_000 });
    expect(answer.statusCode).toBe(403);
    expect(answer.json()).toMatchObject({ error: { code: 'grant_parameters_mismatch' } });
    expect(gateway.transfers).toHaveLength(0);
  });

  it('refuses a grant for another resource', async () => {
    const grant = grantFor({
      action: 'payments.transfer',
      resource: 'acct:5555',
      parameters: TRANSFER,
    });
    const answer = await transfer(grant);
    expect(answer.json()).toMatchObject({ error: { code: 'grant_resource_mismatch' } });
  });

  it('does not coerce parameters (a string amount is other parameters)', async () => {
    const answer = await transfer(transferGrant(), { ...TRANSFER, amountCents: '2500' });
    expect(answer.statusCode).toBe(400);
    expect(gateway.transfers).toHaveLength(0);
  });

  it('asks for a grant when there is none', async () => {
    for (const authorization of [undefined, 'Bearer abc', 'Grant ', 'Grant a b']) {
      const answer = await gateway.app.inject({
        method: 'POST',
        url: '/payments/transfer',
        headers: authorization === undefined ? {} : { authorization },
        payload: TRANSFER,
      });
      expect(answer.statusCode).toBe(401);
      expect(answer.json()).toMatchObject({ error: { code: 'unauthenticated' } });
    }
  });

  it('refuses a forged grant', async () => {
    const answer = await transfer(transferGrant().replace(/\.[^.]+$/, '.AAAA'));
    expect(answer.statusCode).toBe(403);
    expect(answer.json()).toMatchObject({ error: { code: 'grant_signature_invalid' } });
  });

  it('does not execute when redemption is unavailable', async () => {
    appliance.redeemStatus = 503;
    const answer = await transfer(transferGrant());
    expect(answer.statusCode).toBe(503);
    expect(answer.json()).toMatchObject({ error: { code: 'redemption_unavailable' } });
    expect(gateway.transfers).toHaveLength(0);
  });
});

describe('proof of possession is on by default (issue 18)', () => {
  it('refuses a good grant without a Grant-PoP header (grant_pop_invalid), executes nothing', async () => {
    const byDefault = await createGatewayExample({
      issuer: ISSUER,
      audience: AUDIENCE,
      applianceUrl: appliance.url,
    });
    try {
      const grant = transferGrant();
      const res = await byDefault.app.inject({
        method: 'POST',
        url: '/payments/transfer',
        headers: { authorization: `Grant ${grant}` },
        payload: TRANSFER,
      });
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ error: { code: 'grant_pop_invalid' } });
      expect(byDefault.transfers).toEqual([]);
      expect(appliance.redeemed.has(decodeJwt(grant).jti ?? '')).toBe(false);
    } finally {
      await byDefault.app.close();
    }
  });
});

describe('the example gateway with proof of possession', () => {
  let pg: GatewayExample;

  beforeEach(async () => {
    pg = await createGatewayExample({
      issuer: ISSUER,
      audience: AUDIENCE,
      applianceUrl: appliance.url,
      requireProofOfPossession: true,
    });
  });

  afterEach(async () => {
    await pg.app.close();
  });

  async function challenge(): Promise<string> {
    const answer = await pg.app.inject({ method: 'POST', url: '/pop/challenge' });
    return answer.json<{ challenge: string }>().challenge;
  }

  function popHeader(key: EcKey, grant: string, chal: string): string {
    const grantId = decodeJwt(grant).jti ?? '';
    const signature = b64url(
      es256(key.privateKey, popSigningInput({ audience: AUDIENCE, grantId, challenge: chal })),
    );
    return b64url(JSON.stringify({ challenge: chal, signature, publicKey: key.jwk }));
  }

  function send(grant: string, pop: string | undefined) {
    return pg.app.inject({
      method: 'POST',
      url: '/payments/transfer',
      headers: {
        authorization: `Grant ${grant}`,
        ...(pop === undefined ? {} : { 'grant-pop': pop }),
      },
      payload: TRANSFER,
    });
  }

  it('executes with a proof by the session key', async () => {
    const grant = transferGrant();
    const answer = await send(grant, popHeader(appliance.runtime, grant, await challenge()));
    expect(answer.statusCode).toBe(200);
    expect(pg.transfers).toHaveLength(1);
  });

  it('refuses a copied grant without the session key', async () => {
    const grant = transferGrant();
    const thief = await ecKey();
    for (const pop of [undefined, popHeader(thief, grant, await challenge()), 'not-json']) {
      const answer = await send(grant, pop);
      expect(answer.statusCode).toBe(403);
      expect(answer.json()).toMatchObject({ error: { code: 'grant_pop_invalid' } });
    }
    expect(pg.transfers).toHaveLength(0);
    expect(appliance.redeemed.has(decodeJwt(grant).jti ?? '')).toBe(false);
  });

  it('refuses a challenge it did not issue, or one used before', async () => {
    const grant = transferGrant();
    const own = b64url(Buffer.alloc(32, 3));
    const answer = await send(grant, popHeader(appliance.runtime, grant, own));
    expect(answer.json()).toMatchObject({ error: { code: 'grant_pop_invalid' } });
    const chal = await challenge();
    const first = await send(grant, popHeader(appliance.runtime, grant, chal));
    expect(first.statusCode).toBe(200);
    const next = transferGrant();
    const again = await send(next, popHeader(appliance.runtime, next, chal));
    expect(again.json()).toMatchObject({ error: { code: 'grant_pop_invalid' } });
  });

  // One model with the SDK's Enforcer: the proof is verified first, then its challenge is
  // spent atomically. A refused proof or grant leaves the challenge to the runtime it was
  // issued to (it consumed it first before, so the good proof after was refused).
  it('spends a challenge only on a proof that verified, for a grant that verified', async () => {
    const grant = transferGrant();
    const chal = await challenge();
    const thief = await ecKey();
    const stolen = await send(grant, popHeader(thief, grant, chal));
    expect(stolen.json()).toMatchObject({ error: { code: 'grant_pop_invalid' } });
    const other = transferGrant({ aud: 'gw_tickets' });
    const wrong = await send(other, popHeader(appliance.runtime, other, chal));
    expect(wrong.json()).toMatchObject({ error: { code: 'grant_audience_mismatch' } });
    const good = await send(grant, popHeader(appliance.runtime, grant, chal));
    expect(good.statusCode, good.body).toBe(200);
    expect(pg.transfers).toHaveLength(1);
  });

  it('lets one of two good proofs on the same challenge through, concurrently', async () => {
    const chal = await challenge();
    const grants = [transferGrant(), transferGrant()];
    const answers = await Promise.all(
      grants.map((g) => send(g, popHeader(appliance.runtime, g, chal))),
    );
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 403]);
    expect(answers.find((a) => a.statusCode === 403)?.json()).toMatchObject({
      error: { code: 'grant_pop_invalid' },
    });
    expect(pg.transfers).toHaveLength(1);
  });
});
