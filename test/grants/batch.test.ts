/**
 * Batch-signed grants end to end on the production appliance with its grant key in its own
 * TPM (tpm2-pkcs11 behind tpm2-abrmd, GRANTOR_GRANT_BATCH=true): grants requested 16 at a
 * time over HTTP come back batch-signed; each verifies offline with the gateway SDK from the
 * JWKS alone; the TPM made exactly one signature per batch (GET /metrics); each grant has
 * its own audit entry, as in JWS mode; a rotation in the middle of the load leaves every
 * grant verifiable; the example gateway (grantor-gateway) executes a batch-signed grant once.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayExample } from '../../examples/gateway/app.js';
import { decodeBatchProof } from '../../src/gateway/batch.js';
import { decodeBase64url } from '../../src/gateway/encoding.js';
import { parametersDigest } from '../../src/gateway/index.js';
import { startRealAppliance, type RealAppliance } from '../appliance/real.js';
import { grantBody, readTicketWithPop, signed, type Runtime } from './rig.js';
import { attestTpmRuntime, postGrant, verifyOffline, type TpmRuntime } from './tpm-runtime.js';
import { activeGrantKid } from '../../src/keys/testing.js';

let real: RealAppliance;
let runtime: TpmRuntime;
let rt: Runtime;
let session: TpmRuntime['session'];

beforeAll(async () => {
  real = await startRealAppliance(
    'batch',
    {
      GRANTOR_GRANT_BATCH: 'true',
      GRANTOR_GRANT_BATCH_SIZE: '8',
      GRANTOR_GRANT_BATCH_WAIT_MS: '20',
    },
    { grantKeys: 'tpm' },
  );
  runtime = await attestTpmRuntime(real, 'batch-agent');
  ({ rt, session } = runtime);
});

afterAll(async () => {
  await real.close();
});

async function signs(): Promise<number> {
  const text = (await real.server.app.inject({ url: '/metrics' })).body;
  const series = 'grantor_hsm_call_duration_seconds_count{op="sign"}';
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** `total` grants, 16 in flight; `during` runs once the first grant is back. */
async function load(total: number, during?: () => Promise<unknown>): Promise<string[]> {
  let next = 0;
  const grants: string[] = [];
  const failures: string[] = [];
  let started: Promise<unknown> | undefined;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < total) {
        next += 1;
        const { status, body } = await postGrant(real, runtime);
        if (status === 201) grants.push((JSON.parse(body) as { grant: string }).grant);
        else failures.push(`${status} ${body}`);
        if (during !== undefined && started === undefined) started = during();
      }
    }),
  );
  await started;
  expect(failures).toEqual([]);
  return grants;
}

async function verifyAll(grants: readonly string[]): Promise<Set<string>> {
  const kids = new Set<string>();
  for (const v of await verifyOffline(real, grants)) {
    expect(v.form).not.toBe('jws');
    kids.add(v.kid);
  }
  return kids;
}

const rootOf = (grant: string): string =>
  Buffer.from(
    decodeBatchProof(decodeBase64url(grant.split('.')[2] ?? '') ?? Buffer.alloc(0)).root,
  ).toString('hex');

describe('batch-signed grants on the appliance, grant key in the TPM', () => {
  it('signs once per batch; every grant verifies offline and has its own audit entry', async () => {
    const before = await signs();
    const grants = await load(48);
    const roots = new Set(grants.map(rootOf));
    // One TPM signature per batch, and batches of more than one grant.
    expect((await signs()) - before).toBe(roots.size);
    expect(roots.size).toBeLessThan(grants.length);
    await verifyAll(grants);

    const appliance = real.server.appliance;
    if (appliance === undefined) throw new Error('no appliance');
    for (const grant of grants) {
      const claims = JSON.parse(
        Buffer.from(grant.split('.')[1] ?? '', 'base64url').toString('utf8'),
      ) as { jti: string; aud_seq: number; aud_hash: string };
      const [entry] = await appliance.audit.entries(claims.aud_seq, 1);
      expect(entry).toMatchObject({
        type: 'grant.decision',
        decision: 'allow',
        subject: claims.jti,
        hash: claims.aud_hash,
      });
    }
  });

  it('keeps every grant verifiable across a rotation in the middle of batching', async () => {
    const appliance = real.server.appliance;
    if (appliance === undefined) throw new Error('no appliance');
    const old = activeGrantKid(appliance.keys);
    const grants = await load(48, () => appliance.keys.rotate('grant'));
    const kids = await verifyAll(grants);
    const fresh = activeGrantKid(appliance.keys);
    expect(fresh).not.toBe(old);
    for (const kid of kids) expect([old, fresh]).toContain(kid);
  });

  it('the example gateway executes a batch-signed grant once (JWKS and redemption over HTTP)', async () => {
    await real.server.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = real.server.app.server.address() as AddressInfo;
    const enrolled = await real.server.appliance?.operators.gateways.enroll(
      { name: 'batch-gateway', audiences: ['gw_tickets'] },
      'cli',
    );
    const gateway = await createGatewayExample({
      issuer: real.config().applianceId,
      audience: 'gw_tickets',
      applianceUrl: `http://127.0.0.1:${String(port)}`,
      ...(enrolled === undefined ? {} : { gatewayToken: enrolled.token }),
    });
    try {
      const params = { ticketId: 'T-42' };
      const res = await real.server.app.inject({
        method: 'POST',
        url: '/v1/grants',
        payload: signed(
          grantBody(rt, { resource: 'ticket:T-42', parametersDigest: parametersDigest(params) }),
          session.attestationId,
          session.key.privateKey,
        ),
      });
      expect(res.statusCode).toBe(201);
      const { grant } = res.json<{ grant: string }>();
      expect(
        JSON.parse(Buffer.from(grant.split('.')[0] ?? '', 'base64url').toString()),
      ).toMatchObject({
        alg: 'ES256-MTB',
      });
      const { grantId } = res.json<{ grantId: string }>();
      // Proof of possession is on by default: a fresh challenge, signed with the session key.
      const read = () => readTicketWithPop(gateway.app, { grant, grantId }, session.key, params);
      const first = await read();
      expect(first.statusCode).toBe(200);
      expect(first.json()).toMatchObject({ id: 'T-42' });
      const replay = await read();
      expect(replay.statusCode).toBe(409);
      expect(replay.json()).toMatchObject({ error: { code: 'grant_already_redeemed' } });
    } finally {
      await gateway.app.close();
    }
  });
});
