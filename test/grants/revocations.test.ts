/**
 * Issue 18, item 4, on the real parts (test/grants/rig.ts: swtpm, SoftHSM2, Cedar, the
 * anchored audit log, LevelDB) and over real HTTP: a gateway verifying offline with the SDK's
 * RevocationView refuses a runtime's outstanding grant once the runtime is revoked, learned
 * from the feed; a view older than its bound refuses every grant; a tampered, foreign-key or
 * grant-typed snapshot is refused; the snapshot also verifies with plain jose and the JWKS.
 */
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, compactVerify, createLocalJWKSet, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JwksClient,
  RevocationView,
  createGrantVerifier,
  verifyRevocationSnapshot,
  type GrantVerifier,
} from '../../src/gateway/index.js';
import { parametersDigest } from '../../src/gateway/index.js';
import { createGatewayExample } from '../../examples/gateway/app.js';
import {
  ISSUER,
  attest,
  enrollWithEccAk,
  grantBody,
  signed,
  startRig,
  type Rig,
  type Runtime,
} from './rig.js';
import { refusalCode as codeOf } from '../../src/shared/testing/refusal.js';

let rig: Rig;
let support: Runtime;
let session: Awaited<ReturnType<typeof attest>>;
let base: string;

beforeAll(async () => {
  rig = await startRig();
  support = await enrollWithEccAk(rig, 'support-revocations', { team: 'support' });
  session = await attest(rig, support);
  base = await rig.app.listen({ port: 0, host: '127.0.0.1' });
}, 180_000);

afterAll(async () => {
  await rig.close();
});

// What the rig's grantBody asks for.
const execution = {
  action: 'tickets.read',
  resource: 'ticket:42',
  parametersDigest: 'ab'.repeat(32),
};

async function ticketGrant(): Promise<string> {
  const body = signed(
    grantBody(support, { audience: 'gw_tickets' }),
    session.attestationId,
    session.key.privateKey,
  );
  const res = await rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ grant: string }>().grant;
}

function gateway(now?: () => number): { view: RevocationView; verifier: GrantVerifier } {
  const keys = new JwksClient({ url: `${base}/.well-known/jwks.json` });
  const view = new RevocationView({
    applianceUrl: base,
    gatewayToken: rig.gateway.token,
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
  const res = await rig.app.inject({
    url: '/v1/revocations/snapshot',
    headers: rig.gateway.headers,
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
    expect((await verifier.verify(grant, { execution })).runtimeId).toBe(support.runtimeId);
    clock.offsetMs = 31_000;
    expect(await codeOf(verifier.verify(grant, { execution }))).toBe('revocation_view_stale');
    // Confirmed current again: accepted again.
    await view.poll(0);
    expect((await verifier.verify(grant, { execution })).runtimeId).toBe(support.runtimeId);
  }, 120_000);

  it('a tampered, foreign-key, grant-typed or other-issuer snapshot is refused: revocation_snapshot_invalid', async () => {
    const jws = await snapshotJws();
    const keys = new JwksClient({ url: `${base}/.well-known/jwks.json` });
    const opts = { issuer: ISSUER, keys };
    // The real one verifies with the SDK, and with plain jose over the JWKS alone.
    const claims = await verifyRevocationSnapshot(jws, opts);
    expect(claims.iss).toBe(ISSUER);
    const jwks = (await rig.app.inject({ url: '/.well-known/jwks.json' })).json<{
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
    const ahead = await rig.app.inject({
      url: '/v1/revocations?since=999999',
      headers: rig.gateway.headers,
    });
    expect(ahead.statusCode).toBe(410);
    expect(ahead.json<{ error: { code: string } }>().error.code).toBe(
      'revocation_snapshot_required',
    );
    for (const url of ['/v1/revocations?since=0', '/v1/revocations/snapshot']) {
      const none = await rig.app.inject({ url });
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
    expect(ok.runtimeId).toBe(support.runtimeId);
    const from = view.seq ?? -1;
    // The example gateway in offline mode, its own view following the same feed.
    const example = await createGatewayExample({
      issuer: ISSUER,
      audience: 'gw_tickets',
      applianceUrl: base,
      gatewayToken: rig.gateway.token,
      requireProofOfPossession: false,
      offline: { maxStalenessSeconds: 30 },
    });
    const params = { ticketId: 'T-42' };
    const exampleGrant = await (async () => {
      const body = signed(
        grantBody(support, { resource: 'ticket:T-42', parametersDigest: parametersDigest(params) }),
        session.attestationId,
        session.key.privateKey,
      );
      const res = await rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
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
    const revoke = await rig.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${support.runtimeId}/revoke`,
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
