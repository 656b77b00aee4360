/**
 * Issue 18, item 4, on the real parts (test/grants/rig.ts: swtpm, SoftHSM2, Cedar, the
 * anchored audit log, LevelDB) and over real HTTP: a gateway verifying offline with the SDK's
 * RevocationView refuses a runtime's outstanding grant once the runtime is revoked, learned
 * from the feed; a view older than its bound refuses every grant; a tampered, foreign-key or
 * grant-typed snapshot is refused; the snapshot also verifies with plain jose and the JWKS.
 */
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, compactVerify, createLocalJWKSet, exportJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  JwksClient,
  RevocationView,
  createGrantVerifier,
  verifyRevocationSnapshot,
  type GrantVerifier,
} from '../../src/gateway/index.js';
import { parametersDigest } from '../../src/gateway/index.js';
import { createGatewayExample } from '../../examples/gateway/app.js';
import { ISSUER, TICKET_READ as execution, sessionRequest, useRig } from './rig.js';
import { refusalCode as codeOf } from '../../src/shared/testing/refusal.js';

const t = useRig('support-revocations', 'support');
let base: string;
const supportId = (): string => t.attested.runtime.runtimeId;

beforeAll(async () => {
  base = await t.rig.app.listen({ port: 0, host: '127.0.0.1' });
});

async function ticketGrant(): Promise<string> {
  const body = sessionRequest(t.attested, { audience: 'gw_tickets' });
  const res = await t.rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ grant: string }>().grant;
}

function gateway(now?: () => number): { view: RevocationView; verifier: GrantVerifier } {
  const keys = new JwksClient({ url: `${base}/.well-known/jwks.json` });
  const view = new RevocationView({
    applianceUrl: base,
    gatewayToken: t.rig.gateway.token,
    issuer: ISSUER,
    keys,
    maxStalenessSeconds: 30,
    ...(now === undefined ? {} : { now }),
  });
  const verifier = createGrantVerifier({
    issuer: ISSUER,
    audience: 'gw_tickets',
    keys,
    revocations: view,
    ...(now === undefined ? {} : { now }),
  });
  return { view, verifier };
}

async function snapshotJws(): Promise<string> {
  const res = await t.rig.app.inject({
    url: '/v1/revocations/snapshot',
    headers: t.rig.gateway.headers,
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ snapshot: string }>().snapshot;
}

describe('offline revocation at a gateway', () => {
  it('a view older than its bound refuses every grant: revocation_view_stale', async () => {
    const grant = await ticketGrant();
    const clock = { offsetMs: 0 };
    const { view, verifier } = gateway(() => Date.now() + clock.offsetMs);
    await view.loadSnapshot();
    await view.poll(0);
    expect((await verifier.verify(grant, { execution })).runtimeId).toBe(supportId());
    clock.offsetMs = 31_000;
    expect(await codeOf(verifier.verify(grant, { execution }))).toBe('revocation_view_stale');
    // Confirmed current again: accepted again.
    await view.poll(0);
    expect((await verifier.verify(grant, { execution })).runtimeId).toBe(supportId());
  }, 120_000);

  it('a tampered, foreign-key, grant-typed or other-issuer snapshot is refused: revocation_snapshot_invalid', async () => {
    const jws = await snapshotJws();
    const keys = new JwksClient({ url: `${base}/.well-known/jwks.json` });
    const opts = { issuer: ISSUER, keys };
    // The real one verifies with the SDK, and with plain jose over the JWKS alone.
    const claims = await verifyRevocationSnapshot(jws, opts);
    expect(claims.iss).toBe(ISSUER);
    const jwks = (await t.rig.app.inject({ url: '/.well-known/jwks.json' })).json<{
      keys: object[];
    }>();
    const plain = await compactVerify(jws, createLocalJWKSet(jwks as never));
    expect(plain.protectedHeader.typ).toBe('revocations+jwt');

    const [h = '', p = '', sig = ''] = jws.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as { seq: number };
    // A snapshot claiming to be current further than it is.
    const dropped = Buffer.from(JSON.stringify({ ...payload, seq: payload.seq + 100 })).toString(
      'base64url',
    );
    expect(await codeOf(verifyRevocationSnapshot(`${h}.${dropped}.${sig}`, opts))).toBe(
      'revocation_snapshot_invalid',
    );

    // Signed by a key the JWKS does not hold, under the appliance's own kid or another.
    const foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string };
    for (const kid of [header.kid, 'foreign-kid']) {
      const forged = await new CompactSign(Buffer.from(JSON.stringify(payload)))
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'revocations+jwt' })
        .sign(foreign.privateKey);
      expect(await codeOf(verifyRevocationSnapshot(forged, opts))).toBe(
        'revocation_snapshot_invalid',
      );
    }
    expect(await exportJWK(foreign.publicKey)).toHaveProperty('x');

    // A grant, signed by the same key, never passes for a snapshot.
    const grant = await ticketGrant();
    expect(await codeOf(verifyRevocationSnapshot(grant, opts))).toBe('revocation_snapshot_invalid');
    expect(await codeOf(verifyRevocationSnapshot(jws, { ...opts, issuer: 'other' }))).toBe(
      'revocation_snapshot_invalid',
    );
    // Expired.
    expect(
      await codeOf(verifyRevocationSnapshot(jws, { ...opts, now: () => Date.now() + 3_600_000 })),
    ).toBe('revocation_snapshot_invalid');
  }, 120_000);

  it('the feed refuses a since beyond its head and anyone without a gateway token', async () => {
    const ahead = await t.rig.app.inject({
      url: '/v1/revocations?since=999999',
      headers: t.rig.gateway.headers,
    });
    expect(ahead.statusCode).toBe(410);
    expect(ahead.json<{ error: { code: string } }>().error.code).toBe(
      'revocation_snapshot_required',
    );
    for (const url of ['/v1/revocations?since=0', '/v1/revocations/snapshot']) {
      const none = await t.rig.app.inject({ url });
      expect(none.statusCode).toBe(401);
      expect(none.json<{ error: { code: string } }>().error.code).toBe('gateway_unauthenticated');
    }
  });

  // Last: it revokes the rig's runtime.
  it('a runtime revoked: its outstanding grant is refused by the offline gateway, learned from the feed', async () => {
    const grant = await ticketGrant();
    const { view, verifier } = gateway();
    // Without a view confirmed current, nothing is accepted (fail closed).
    expect(await codeOf(verifier.verify(grant, { execution }))).toBe('revocation_view_stale');
    await view.loadSnapshot();
    const ok = await verifier.verify(grant, { execution });
    expect(ok.runtimeId).toBe(supportId());
    const from = view.seq ?? -1;
    // The example gateway in offline mode, its own view following the same feed.
    const example = await createGatewayExample({
      issuer: ISSUER,
      audience: 'gw_tickets',
      applianceUrl: base,
      gatewayToken: t.rig.gateway.token,
      requireProofOfPossession: false,
      offline: { maxStalenessSeconds: 30 },
    });
    const params = { ticketId: 'T-42' };
    const exampleGrant = await (async () => {
      const body = sessionRequest(t.attested, {
        resource: 'ticket:T-42',
        parametersDigest: parametersDigest(params),
      });
      const res = await t.rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
      expect(res.statusCode, res.body).toBe(201);
      return res.json<{ grant: string }>().grant;
    })();
    const read = () =>
      example.app.inject({
        method: 'POST',
        url: '/tickets/read',
        headers: { authorization: `Grant ${exampleGrant}` },
        payload: params,
      });

    // The gateway long-polls; the operator revokes the runtime meanwhile.
    const polled = view.poll(25);
    const revoke = await t.rig.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${supportId()}/revoke`,
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    await polled;
    // One poll may end on the runtime's event alone: follow to the head.
    while ((view.seq ?? 0) < from + 2) await view.poll(25);
    expect(view.lagSeconds()).toBeLessThan(30);
    expect(view.size.runtimes).toBe(1);
    expect(await codeOf(verifier.verify(grant, { execution }))).toBe('grant_revoked');
    // The example gateway refuses its grant too, once its own view has the events.
    while ((example.revocations?.seq ?? 0) < (view.seq ?? 0)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const refused = await read();
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ error: { code: 'grant_revoked' } });
    await example.app.close();

    // A fresh gateway learns the same from the signed snapshot alone.
    const fresh = gateway();
    await fresh.view.loadSnapshot();
    expect(fresh.view.seq).toBe(view.seq);
    expect(await codeOf(fresh.verifier.verify(grant, { execution }))).toBe('grant_revoked');
  }, 120_000);
});
