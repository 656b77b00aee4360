/**
 * Grants end to end on the real parts (test/grants/rig.ts): two runtimes on an swtpm
 * (tpm2-tools) enroll, activate and attest; grants in session and quote mode through the
 * routes, decided by the Cedar engine over policies/default, audited into the anchored log
 * (appliance swtpm), signed in SoftHSM2; verified with src/gateway and plain jose against
 * the JWKS; redeemed once. Then the adversarial suite and the fault tests.
 */
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import canonicalizeModule from 'canonicalize';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet, decodeJwt, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticKeySource, verifyGrant } from '../../src/gateway/index.js';
import type { GrantorError } from '../../src/shared/errors.js';
import {
  ISSUER,
  attest,
  enroll,
  enrollWithEccAk,
  grantBody,
  readTicketWithPop,
  quoted,
  sessionRequest,
  signed,
  startRig,
  TICKET_READ,
  type AttestedRuntime,
  type Rig,
  type Runtime,
  type SessionKeyPair,
} from './rig.js';
import { createRsaAk } from '../attestation/tools.js';
import { repoRoot } from '../rig/sim.js';
import { createGatewayExample } from '../../examples/gateway/app.js';

// The library itself (not src/shared/jcs.ts): `module.exports = fn` under its declared default.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

let rig: Rig;
let payments: Runtime; // team payments: RSA EK, ECC AK
let support: Runtime; // team support: P-384 EK, RSA AK
let paySession: { attestationId: string; key: SessionKeyPair };
let supSession: { attestationId: string; key: SessionKeyPair };
// The runtimes with their current sessions, for sessionRequest.
const pay: AttestedRuntime = {
  get runtime() {
    return payments;
  },
  get session() {
    return paySession;
  },
};
const sup: AttestedRuntime = {
  get runtime() {
    return support;
  },
  get session() {
    return supSession;
  },
};

beforeAll(async () => {
  rig = await startRig();
  const t = rig.tools;
  payments = await enrollWithEccAk(rig, 'payments-agent', { team: 'payments' });
  await createRsaAk(t, '0x81010016'); // under the P-384 EK that support enrolls with
  support = await enroll(
    rig,
    'support-agent',
    { team: 'support' },
    { ctx: 'akrsa.ctx', pub: 'akrsa.pub' },
    'ecc',
  );
  paySession = await attest(rig, payments);
  supSession = await attest(rig, support);
}, 180_000);

afterAll(async () => {
  await rig.close();
});

interface ErrorReply {
  error: { code: string; message: string; details?: { reasons?: string[] } };
}

async function post(body: Record<string, unknown>) {
  return rig.app.inject({ method: 'POST', url: '/v1/grants', payload: body });
}

async function jwks(): Promise<string> {
  const res = await rig.app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  expect(res.statusCode).toBe(200);
  return res.body;
}

async function entries() {
  return rig.audit.entries(0, 10_000);
}

interface Issued {
  grantId: string;
  grant: string;
  expiresAt: string;
  auditSeq: number;
}

describe('the story, end to end', () => {
  let ticket: Issued;
  let transfer: Issued;

  it('session mode: support reads a ticket (201), and the grant verifies at a gateway and with plain jose', async () => {
    const body = sessionRequest(sup);
    const res = await post(body);
    expect(res.statusCode).toBe(201);
    ticket = res.json<Issued>();
    const keys = await staticKeySource(await jwks());
    const verified = await verifyGrant(ticket.grant, {
      issuer: ISSUER,
      audience: 'gw_tickets',
      keys,
      execution: TICKET_READ,
    });
    expect(verified.grantId).toBe(ticket.grantId);
    expect(verified.runtimeId).toBe(support.runtimeId);
    expect(verified.claims.lin).toEqual({ parent: null, root: ticket.grantId, depth: 0 });
    expect(verified.claims.att.attestationId).toBe(supSession.attestationId);
    expect(verified.claims.aud_seq).toBe(ticket.auditSeq);

    const { protectedHeader, payload } = await compactVerify(
      ticket.grant,
      createLocalJWKSet(JSON.parse(await jwks()) as JSONWebKeySet),
      { algorithms: ['ES256'] },
    );
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'grant+jwt' });
    const claims = JSON.parse(Buffer.from(payload).toString()) as Record<string, unknown>;
    expect(claims.exp).toBe(Math.floor(Date.parse(ticket.expiresAt) / 1000));

    // The decision is in the anchored log, under the grant's id, with the hash the grant names.
    const entry = (await entries()).find((e) => e.seq === ticket.auditSeq);
    expect(entry).toMatchObject({
      type: 'grant.decision',
      subject: ticket.grantId,
      decision: 'allow',
    });
    expect(claims.aud_hash).toBe(entry?.hash);
    // `pol` is the SHA-256 of JCS({schema, policies: {file: text}}) of the files on disk, and
    // the entry's first reason names the same set.
    const dir = join(repoRoot, 'policies/default');
    const files = (await readdir(dir)).filter((n) => n.endsWith('.cedar')).sort();
    const policies = Object.fromEntries(
      await Promise.all(files.map(async (n) => [n, await readFile(join(dir, n), 'utf8')])),
    ) as Record<string, string>;
    const schema = await readFile(join(repoRoot, 'policies/grantor.cedarschema'), 'utf8');
    const pol = createHash('sha256')
      .update(canonicalize({ schema, policies }) ?? '')
      .digest('hex');
    expect(claims.pol).toBe(pol);
    expect(entry?.reasons?.[0]).toBe(`pol:${pol}`);
  });

  it('the example gateway executes a granted ticket read once, refuses its replay and another ticket', async () => {
    await rig.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = rig.app.server.address() as AddressInfo;
    const gateway = await createGatewayExample({
      issuer: ISSUER,
      audience: 'gw_tickets',
      applianceUrl: `http://127.0.0.1:${port}`,
      gatewayToken: rig.gateway.token,
    });
    try {
      const params = { ticketId: 'T-42' };
      const parametersDigest = createHash('sha256')
        .update(canonicalize(params) ?? '')
        .digest('hex');
      const issued = await post(sessionRequest(sup, { resource: 'ticket:T-42', parametersDigest }));
      expect(issued.statusCode).toBe(201);
      const { grant, grantId } = issued.json<Issued>();
      // Proof of possession is on by default: a fresh challenge, signed with the session key.
      const read = (payload: Record<string, unknown>) =>
        readTicketWithPop(gateway.app, { grant, grantId }, supSession.key, payload);
      // Another ticket than the grant names: refused before anything is redeemed.
      const other = await read({ ticketId: 'T-43' });
      expect(other.statusCode).toBe(403);
      expect(other.json()).toMatchObject({ error: { code: 'grant_resource_mismatch' } });
      const first = await read(params);
      expect(first.statusCode).toBe(200);
      expect(first.json()).toMatchObject({ id: 'T-42' });
      const replay = await read(params);
      expect(replay.statusCode).toBe(409);
      expect(replay.json()).toMatchObject({ error: { code: 'grant_already_redeemed' } });
      // The appliance recorded the one redemption, by this gateway, and what it executed.
      const lineage = await rig.app.inject({ url: `/v1/grants/${grantId}/lineage` });
      expect(lineage.json()).toMatchObject({
        grant: {
          grantId,
          state: 'redeemed',
          redeemedBy: rig.gateway.id,
          execution: {
            gateway: rig.gateway.id,
            outcome: 'succeeded',
            resultDigest: createHash('sha256')
              .update(canonicalize(first.json()) ?? '')
              .digest('hex'),
          },
        },
      });
    } finally {
      await gateway.app.close();
    }
  });

  it('every grant verifies at the gateway (the HSM signature is normalised to low S)', async () => {
    const keys = await staticKeySource(await jwks());
    const issued = await Promise.all(Array.from({ length: 16 }, () => post(sessionRequest(sup))));
    for (const res of issued) {
      expect(res.statusCode).toBe(201);
      await verifyGrant(res.json<Issued>().grant, {
        issuer: ISSUER,
        audience: 'gw_tickets',
        keys,
        execution: TICKET_READ,
      });
    }
  });

  it('a grant for another audience, action or parameters is refused by the gateway', async () => {
    const keys = await staticKeySource(await jwks());
    const base = { issuer: ISSUER, keys };
    const exec = TICKET_READ;
    await expect(
      verifyGrant(ticket.grant, { ...base, audience: 'gw_payments', execution: exec }),
    ).rejects.toMatchObject({ code: 'grant_audience_mismatch' });
    await expect(
      verifyGrant(ticket.grant, {
        ...base,
        audience: 'gw_tickets',
        execution: { ...exec, action: 'tickets.update' },
      }),
    ).rejects.toMatchObject({ code: 'grant_action_mismatch' });
    await expect(
      verifyGrant(ticket.grant, {
        ...base,
        audience: 'gw_tickets',
        execution: { ...exec, parametersDigest: 'cd'.repeat(32) },
      }),
    ).rejects.toMatchObject({ code: 'grant_parameters_mismatch' });
  });

  it('payments.transfer in session mode: 403 policy_denied with the policy reason, audited', async () => {
    const body = sessionRequest(pay, {
      action: 'payments.transfer',
      resource: 'acct:1234',
      audience: 'gw_payments',
    });
    const res = await post(body);
    expect(res.statusCode).toBe(403);
    const err = res.json<ErrorReply>().error;
    expect(err.code).toBe('policy_denied');
    expect(err.details?.reasons).toContain('moving money needs a fresh quote');
    const last = (await entries()).at(-1);
    expect(last).toMatchObject({ type: 'grant.decision', decision: 'deny' });
    expect(last?.reasons).toContain('moving money needs a fresh quote');
  });

  it('payments.transfer in quote mode (a quote over this very request): 201, capped at 60 s', async () => {
    const body = await quoted(
      rig,
      payments,
      grantBody(payments, {
        action: 'payments.transfer',
        resource: 'acct:1234',
        audience: 'gw_payments',
        ttlSeconds: 300,
      }),
    );
    const res = await post(body);
    expect(res.statusCode).toBe(201);
    transfer = res.json<Issued>();
    const claims = decodeJwt(transfer.grant);
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(60);
    const verified = await verifyGrant(transfer.grant, {
      issuer: ISSUER,
      audience: 'gw_payments',
      keys: await staticKeySource(await jwks()),
      execution: {
        action: 'payments.transfer',
        resource: 'acct:1234',
        parametersDigest: 'ab'.repeat(32),
      },
    });
    expect(verified.claims.act.action).toBe('payments.transfer');
  });

  it('a child grant (payments.notify under the transfer) and the lineage of both', async () => {
    const body = sessionRequest(pay, {
      action: 'payments.notify',
      resource: 'acct:1234',
      audience: 'gw_payments',
      parentGrantId: transfer.grantId,
    });
    const res = await post(body);
    expect(res.statusCode).toBe(201);
    const child = res.json<Issued>();
    expect(decodeJwt(child.grant).lin).toEqual({
      parent: transfer.grantId,
      root: transfer.grantId,
      depth: 1,
    });
    const lin = await rig.app.inject({ method: 'GET', url: `/v1/grants/${child.grantId}/lineage` });
    expect(lin.statusCode).toBe(200);
    const l = lin.json<{ ancestors: { grantId: string }[]; descendants: unknown[] }>();
    expect(l.ancestors.map((a) => a.grantId)).toEqual([transfer.grantId]);
    expect(l.descendants).toEqual([]);
    const up = await rig.app.inject({
      method: 'GET',
      url: `/v1/grants/${transfer.grantId}/lineage`,
    });
    expect(up.json<{ descendants: { grantId: string; depth: number }[] }>().descendants).toEqual([
      expect.objectContaining({ grantId: child.grantId, depth: 1, state: 'live' }),
    ]);
  });

  it('redeem once (200), 409 grant_already_redeemed on replay, wrong audience refused', async () => {
    const url = `/v1/grants/${ticket.grantId}/redeem`;
    const wrong = await rig.app.inject({
      method: 'POST',
      url,
      headers: rig.gateway.headers,
      payload: { audience: 'gw_payments' },
    });
    expect(wrong.json<ErrorReply>().error.code).toBe('grant_audience_mismatch');
    const first = await rig.app.inject({
      method: 'POST',
      url,
      headers: rig.gateway.headers,
      payload: { audience: 'gw_tickets', outcome: 'started' },
    });
    expect(first.statusCode).toBe(200);
    const again = await rig.app.inject({
      method: 'POST',
      url,
      headers: rig.gateway.headers,
      payload: { audience: 'gw_tickets' },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json<ErrorReply>().error.code).toBe('grant_already_redeemed');
    expect(
      (await entries()).filter((e) => e.type === 'grant.redeem' && e.subject === ticket.grantId),
    ).toHaveLength(1);
  });

  it('redeem of an unknown grant: 404 grant_not_found', async () => {
    const res = await rig.app.inject({
      method: 'POST',
      url: '/v1/grants/gr_nope/redeem',
      headers: rig.gateway.headers,
      payload: { audience: 'gw_tickets' },
    });
    expect(res.statusCode).toBe(404);
    expect(res.json<ErrorReply>().error.code).toBe('grant_not_found');
  });

  it('revoking the transfer revokes its live child; the child can no longer be redeemed', async () => {
    const res = await rig.app.inject({
      method: 'POST',
      url: `/v1/grants/${transfer.grantId}/revoke`,
    });
    expect(res.statusCode).toBe(200);
    const r = res.json<{ revoked: string[] }>();
    expect(r.revoked).toHaveLength(2);
    const lin = await rig.app.inject({
      method: 'GET',
      url: `/v1/grants/${transfer.grantId}/lineage`,
    });
    const l = lin.json<{
      grant: { state: string };
      descendants: { grantId: string; state: string }[];
    }>();
    expect(l.grant.state).toBe('revoked');
    expect(l.descendants.map((d) => d.state)).toEqual(['revoked']);
    const childId = l.descendants[0]?.grantId ?? '';
    const redeem = await rig.app.inject({
      method: 'POST',
      url: `/v1/grants/${childId}/redeem`,
      headers: rig.gateway.headers,
      payload: { audience: 'gw_payments' },
    });
    expect(redeem.json<ErrorReply>().error.code).toBe('grant_revoked');
    const revokes = (await entries()).filter((e) => e.type === 'grant.revoke');
    expect(revokes).toEqual([
      expect.objectContaining({ subject: transfer.grantId, decision: 'revoked' }),
    ]);
  });

  it('the body schema refuses unknown members and both proofs at once (400)', async () => {
    const body = sessionRequest(sup);
    const extra = await post({ ...body, admin: true });
    expect(extra.statusCode).toBe(400);
    const both = await post({
      ...body,
      quote: { nonce: 'AA==', quote: 'AA==', signature: 'AA==', pcrs: {} },
    });
    expect(both.statusCode).toBe(400);
    expect(both.json<ErrorReply>().error.code).toBe('bad_request');
    const ttl = await post(sessionRequest(sup, { ttlSeconds: 0 }));
    expect(ttl.statusCode).toBe(400);
  });
});

describe('adversarial grant requests', () => {
  const code = async (body: Record<string, unknown>): Promise<string> =>
    (await post(body)).json<ErrorReply>().error.code;

  it('a replayed requestId: request_replayed', async () => {
    const body = sessionRequest(sup);
    expect((await post(body)).statusCode).toBe(201);
    expect(await code(body)).toBe('request_replayed');
  });

  it('a stale issuedAt: request_stale', async () => {
    const stale = new Date(Date.now() - 10 * 60_000).toISOString();
    expect(await code(sessionRequest(sup, { issuedAt: stale }))).toBe('request_stale');
  });

  it('a signature by another session key: request_signature_invalid', async () => {
    expect(
      await code(signed(grantBody(support), supSession.attestationId, paySession.key.privateKey)),
    ).toBe('request_signature_invalid');
  });

  it('a session of another runtime: session_runtime_mismatch', async () => {
    expect(
      await code(signed(grantBody(payments), supSession.attestationId, supSession.key.privateKey)),
    ).toBe('session_runtime_mismatch');
  });

  it('a parent from another lineage (another runtime): policy_denied, delegation refused', async () => {
    const root = await post(sessionRequest(sup, { ttlSeconds: 300 }));
    expect(root.statusCode).toBe(201);
    const parentGrantId = root.json<Issued>().grantId;
    const res = await post(sessionRequest(pay, { action: 'payments.notify', parentGrantId }));
    expect(res.statusCode).toBe(403);
    const err = res.json<ErrorReply>().error;
    expect(err.code).toBe('policy_denied');
    expect(err.details?.reasons).toContain('delegation to another runtime is not allowed');
  });

  it('an unknown parent: grant_parent_not_found', async () => {
    expect(await code(sessionRequest(sup, { parentGrantId: 'gr_unknown' }))).toBe(
      'grant_parent_not_found',
    );
  });

  it('depth beyond policy: policy_denied naming the depth bound', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-depth-policy-'));
    try {
      await writeFile(
        join(dir, 'chain.cedar'),
        [
          '@id("tickets-chain")',
          '@maxDepth("1")',
          'permit (principal is Runtime, action == Action::"tickets.read", resource)',
          'when { principal.labels has team && principal.labels.team == "support" };',
          '',
        ].join('\n'),
      );
      const svc = await rig.grantsWithPolicy(dir);
      const ask = (over: Record<string, unknown>) =>
        svc.request(sessionRequest(sup, { ttlSeconds: 300, ...over }), new Date());
      const root = await ask({});
      const child = await ask({ parentGrantId: root.grantId });
      const err = await ask({ parentGrantId: child.grantId }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'policy_denied' });
      expect((err as GrantorError).details?.reasons).toEqual([
        'policy "tickets-chain" allows a lineage depth of at most 1',
      ]);
      // And the appliance-wide bound, checked before the policy is asked.
      const bounded = await rig.grantsWithPolicy(dir, { maxDepth: 1 });
      await expect(
        bounded.request(sessionRequest(sup, { parentGrantId: child.grantId }), new Date()),
      ).rejects.toMatchObject({ code: 'grant_depth_exceeded' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a quote over another request body: the quote is refused (quote_nonce_mismatch family), nothing issued', async () => {
    const body = await quoted(
      rig,
      payments,
      grantBody(payments, {
        action: 'payments.transfer',
        resource: 'acct:1',
        audience: 'gw_payments',
      }),
    );
    const before = rig.faults.grantSignatures;
    const res = await post({ ...body, resource: 'acct:9999' });
    expect(res.statusCode).toBe(422);
    expect(res.json<ErrorReply>().error.code).toMatch(/^quote_/);
    expect(rig.faults.grantSignatures).toBe(before);
  });

  it('an expired session: session_not_live (last: it ends the session)', async () => {
    const body = sessionRequest(sup);
    rig.clock.offsetMs = 16 * 60_000;
    try {
      const res = await rig.grants
        .request(
          { ...body, issuedAt: new Date(Date.now() + rig.clock.offsetMs).toISOString() },
          new Date(Date.now() + rig.clock.offsetMs),
        )
        .catch((e: unknown) => e);
      expect(res).toMatchObject({ code: 'session_not_live' });
    } finally {
      rig.clock.offsetMs = 0;
    }
    // Through the route too, now that the session is gone.
    expect(await code(sessionRequest(sup))).toBe('session_not_live');
    supSession = await attest(rig, support);
  });
});

describe('faults: fail closed, nothing issued, nothing half-recorded', () => {
  const ask = () => post(sessionRequest(sup));

  it('HSM down: 503 hsm_unavailable, and the committed allow is followed by grant.issue_failed', async () => {
    const before = (await entries()).length;
    rig.faults.hsmDown = true;
    let res;
    try {
      res = await ask();
    } finally {
      rig.faults.hsmDown = false;
    }
    expect(res.statusCode).toBe(503);
    expect(res.json<ErrorReply>().error.code).toBe('hsm_unavailable');
    const added = (await entries()).slice(before);
    expect(added.map((e) => [e.type, e.decision])).toEqual([
      ['grant.decision', 'allow'],
      ['grant.issue_failed', 'failed'],
    ]);
    expect(added[1]?.subject).toBe(added[0]?.subject);
    expect(added[1]?.reasons).toEqual(['hsm_unavailable']);
    const lin = await rig.app.inject({
      method: 'GET',
      url: `/v1/grants/${added[0]?.subject ?? ''}/lineage`,
    });
    expect(lin.json<ErrorReply>().error.code).toBe('grant_not_found');
    expect((await ask()).statusCode).toBe(201);
  });

  it.each([
    ['audit log', 'audit_unavailable', 'auditDown'],
    ['policy engine', 'policy_unavailable', 'policyDown'],
  ] as const)('%s failing: 503 %s, nothing signed, nothing logged', async (_part, code, fault) => {
    const before = (await entries()).length;
    const signatures = rig.faults.grantSignatures;
    rig.faults[fault] = true;
    let res;
    try {
      res = await ask();
    } finally {
      rig.faults[fault] = false;
    }
    expect(res.statusCode).toBe(503);
    expect(res.json<ErrorReply>().error.code).toBe(code);
    expect(rig.faults.grantSignatures).toBe(signatures);
    expect((await entries()).length).toBe(before);
  });
});
