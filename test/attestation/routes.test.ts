/**
 * The runtime routes behind the operator auth hook, through app.inject(): who may call what,
 * strict schemas, and the §1/§2 flow with a software TPM (the swtpm flows are in
 * e2e.test.ts, adversarial.test.ts and attester.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qualifyingData } from '../../src/attestation/index.js';
import { sessionKey } from '../../src/attestation/testing/fakes.js';
import { SoftEk, SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import { createServer, type App } from '../../src/http/app.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { runtimesRoutes } from '../../src/http/routes/runtimes.js';
import { UnauthenticatedError } from '../../src/operators/errors.js';
import type { OperatorActor } from '../../src/operators/roles.js';
import { softAttestationService } from './harness.js';

const OPERATOR = `gop_${'0'.repeat(16)}${'A'.repeat(43)}`;
const AUDITOR = `gop_${'1'.repeat(16)}${'A'.repeat(43)}`;
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

let app: App;
const tpm = new SoftTpm('ecc');
const ek = new SoftEk();

beforeAll(async () => {
  const svc = softAttestationService(tpm, 'routes');
  app = createServer();
  await app.register(operatorAuth, {
    requireDeclaration: /^\/v1\//,
    tokens: {
      authenticate: (token: string): Promise<OperatorActor> => {
        const role = token === OPERATOR ? 'operator' : token === AUDITOR ? 'auditor' : undefined;
        if (role === undefined) return Promise.reject(new UnauthenticatedError());
        return Promise.resolve({
          kind: 'operator',
          id: `tok_${role}`,
          role,
          name: role,
        } as OperatorActor);
      },
    },
  });
  await app.register(runtimesRoutes, { attestation: svc });
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

const enrollBody = () => ({
  name: 'soft-runtime',
  ekPublic: ek.ekPublicBytes.toString('base64'),
  akPublic: tpm.akPublicBytes.toString('base64'),
});

describe('runtime routes', () => {
  it('refuse unknown members, bad ids and operator credentials on runtime routes', async () => {
    const extra = await app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      payload: { ...enrollBody(), admin: true },
    });
    expect(extra.json()).toMatchObject({ error: { code: 'bad_request' } });
    const badId = await app.inject({ method: 'POST', url: '/v1/runtimes/nope/challenges' });
    expect(badId.json()).toMatchObject({ error: { code: 'bad_request' } });
    const asOperator = await app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      headers: bearer(OPERATOR),
      payload: enrollBody(),
    });
    expect(asOperator.statusCode).toBe(403);
    expect(asOperator.json()).toMatchObject({ error: { code: 'forbidden' } });
  });

  it('enroll -> activate -> (operator) approve -> challenge -> attest, with the operator routes behind roles', async () => {
    const enrolled = await app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      payload: enrollBody(),
    });
    expect(enrolled.statusCode).toBe(201);
    const e = enrolled.json<{
      runtimeId: string;
      credentialBlob: string;
      encryptedSecret: string;
    }>();
    const act = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/activation`,
      payload: { secret: ek.activateEnrollment(e, tpm) },
    });
    expect(act.json()).toEqual({ runtimeId: e.runtimeId, state: 'pending_approval' });

    const anonymous = await app.inject({ method: 'GET', url: `/v1/runtimes/${e.runtimeId}` });
    expect(anonymous.json()).toMatchObject({ error: { code: 'unauthenticated' } });
    const byAuditor = await app.inject({
      method: 'GET',
      url: `/v1/runtimes/${e.runtimeId}`,
      headers: bearer(AUDITOR),
    });
    expect(byAuditor.json()).toMatchObject({
      state: 'pending_approval',
      ekCertified: false,
      referencePolicy: 'soft',
    });
    const auditorApproves = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/approve`,
      headers: bearer(AUDITOR),
    });
    expect(auditorApproves.json()).toMatchObject({ error: { code: 'forbidden' } });
    const approved = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/approve`,
      headers: bearer(OPERATOR),
    });
    expect(approved.json()).toEqual({ runtimeId: e.runtimeId, state: 'active' });

    const ch = await app.inject({ method: 'POST', url: `/v1/runtimes/${e.runtimeId}/challenges` });
    expect(ch.statusCode).toBe(201);
    const nonce = Buffer.from(ch.json<{ nonce: string }>().nonce, 'base64');
    const key = sessionKey();
    const body = {
      ...tpm.quote(nonce, qualifyingData(nonce, key), {
        selection: [{ bank: 'sha256', pcrs: [0] }],
      }),
      sessionKey: key,
    };
    const res = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/attestations`,
      payload: body,
    });
    expect(res.statusCode).toBe(201);
    expect(Object.keys(res.json<object>()).sort()).toEqual([
      'attestationId',
      'pcrDigestHex',
      'reasons',
      'resetCount',
      'restartCount',
      'validUntil',
      'verdict',
    ]);
    expect(res.json()).toMatchObject({ verdict: 'trusted' });
    const replay = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/attestations`,
      payload: body,
    });
    expect(replay.json()).toMatchObject({ error: { code: 'nonce_reused' } });
    const revoked = await app.inject({
      method: 'POST',
      url: `/v1/runtimes/${e.runtimeId}/revoke`,
      headers: bearer(OPERATOR),
    });
    expect(revoked.json()).toEqual({ runtimeId: e.runtimeId, state: 'revoked' });
  });
});
