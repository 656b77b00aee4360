/**
 * Typed facts of the remaining entry types (issue 16), written by the real services into the
 * real log: a runtime's enrollment and registry events and a gateway's outcome report on the
 * grants rig (swtpm runtime and appliance TPM, SoftHSM2, LevelDB), and the appliance's key
 * lifecycle, policy reload, credential and refused-operator entries on the whole appliance.
 * Each entry is version 2 with its type's facts, the chain verifies with them, and no secret
 * of the run is in any fact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLink, GENESIS_PREV_HASH, type AuditEntry } from '../../src/audit/entry.js';
import { factsProblem } from '../../src/audit/facts.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { createEccAk } from '../attestation/tools.js';
import {
  attest,
  enroll,
  grantBody,
  RIG_OPERATOR,
  signed,
  startRig,
  type Rig,
} from '../grants/rig.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { repoRoot } from '../rig/sim.js';

/** Every entry links, hashes and (version 2) fits its type's schema. */
function expectChain(entries: readonly AuditEntry[]): void {
  let prev = GENESIS_PREV_HASH;
  entries.forEach((e, i) => {
    expect(checkLink(e, i, prev), `entry ${i} (${e.type})`).toBeUndefined();
    prev = e.hash;
  });
}

function ofType(entries: readonly AuditEntry[], type: string): AuditEntry {
  const e = entries.filter((x) => x.type === type).pop();
  expect(e, type).toBeDefined();
  expect(e?.v, type).toBe(2);
  expect(factsProblem(type, e?.facts), type).toBeUndefined();
  return e as AuditEntry;
}

describe('runtime and grant outcome facts (grants rig)', () => {
  let rig: Rig;

  beforeAll(async () => {
    rig = await startRig();
  }, 180_000);
  afterAll(async () => {
    await rig.close();
  });

  it('enroll, activate, labels, attest, outcome, revoke and release each write their facts', async () => {
    await createEccAk(rig.tools);
    await rig.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', '0x81010003']);
    const rt = await enroll(
      rig,
      'facts-agent',
      { team: 'support' },
      { ctx: '0x81010003', pub: 'ak.pub' },
      'rsa',
    );
    const session = await attest(rig, rt);
    const issued = await rig.app.inject({
      method: 'POST',
      url: '/v1/grants',
      payload: signed(grantBody(rt), session.attestationId, session.key.privateKey),
    });
    expect(issued.statusCode, issued.body).toBe(201);
    const grantId = issued.json<{ grantId: string }>().grantId;
    const redeemed = await rig.app.inject({
      method: 'POST',
      url: `/v1/grants/${grantId}/redeem`,
      headers: rig.gateway.headers,
      payload: { audience: 'gw_tickets' },
    });
    expect(redeemed.statusCode, redeemed.body).toBe(200);
    const resultDigest = 'ab'.repeat(32);
    const reported = await rig.app.inject({
      method: 'POST',
      url: `/v1/grants/${grantId}/outcome`,
      headers: rig.gateway.headers,
      payload: { outcome: 'succeeded', resultDigest },
    });
    expect(reported.statusCode, reported.body).toBe(200);
    await rig.attestation.revoke(rt.runtimeId);
    await rig.attestation.release(rt.runtimeId, RIG_OPERATOR);

    const entries = await rig.audit.entries(0, 10_000);
    expectChain(entries);
    const mine = entries.filter((e) => e.subject === rt.runtimeId);
    const enrolled = ofType(mine, 'runtime.enroll');
    expect(enrolled.facts).toMatchObject({
      runtime: rt.runtimeId,
      actor: null,
      labelsDigest: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown,
    });
    expect(enrolled.facts).toHaveProperty('akName', expect.stringMatching(/^000b[0-9a-f]{64}$/));
    expect(enrolled.facts).toHaveProperty('ekFingerprint', expect.stringMatching(/^[0-9a-f]{64}$/));
    expect(ofType(mine, 'runtime.activate').facts).toMatchObject({ runtime: rt.runtimeId });
    const labels = ofType(mine, 'runtime.labels.assign');
    expect(labels.facts).toMatchObject({ actor: RIG_OPERATOR.id });
    expect(ofType(mine, 'runtime.revoke').facts).toMatchObject({ runtime: rt.runtimeId });
    expect(ofType(mine, 'runtime.release').facts).toMatchObject({ actor: RIG_OPERATOR.id });
    expect(ofType(entries, 'grant.outcome').facts).toEqual({
      grant: grantId,
      runtime: rt.runtimeId,
      gateway: rig.gateway.id,
      outcome: 'succeeded',
      resultDigest,
    });
    // The gateway's bearer token is in no fact.
    expect(JSON.stringify(entries).includes(rig.gateway.token)).toBe(false);
  }, 180_000);
});

describe('key, policy, credential and refusal facts (whole appliance)', () => {
  let applianceRig: ApplianceRig | undefined;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    applianceRig = await startApplianceRig('facts');
    const config = loadConfig(applianceRig.env(), repoRoot);
    await provisionOnTpm(config);
    server = await startApplianceServer(config);
  }, 180_000);
  afterAll(async () => {
    await server?.close();
    await applianceRig?.destroy();
  });

  it('each act writes its facts and the chain verifies with them', async () => {
    const appliance = server?.appliance;
    if (appliance === undefined || server === undefined) throw new Error('no appliance');
    const created = await appliance.operators.tokens.create({ role: 'auditor', actor: 'alice' });
    const rotated = await appliance.keys.rotate('grant');
    const policy = await appliance.reloadPolicy('alice');
    const refused = await server.app.inject({ method: 'POST', url: '/v1/policy/reload' });
    expect(refused.statusCode).toBe(401);

    const entries = await appliance.audit.entries(0, 10_000);
    expectChain(entries);
    expect(ofType(entries, 'operator.token_created').facts).toMatchObject({
      person: 'alice',
      actor: 'cli',
      roles: ['auditor'],
      audiences: [],
    });
    expect(ofType(entries, 'operator.registered').facts).toMatchObject({ person: 'alice' });
    expect(ofType(entries, 'key.rotated').facts).toEqual({
      kid: rotated.active.kid,
      purpose: 'grant',
      previousKid: rotated.previous?.kid ?? null,
      reason: 'on_demand',
    });
    expect(ofType(entries, 'policy.reloaded').facts).toEqual({
      policyHash: policy.hash,
      version: policy.version,
      by: 'alice',
      code: null,
    });
    expect(ofType(entries, 'operator.refused').facts).toMatchObject({
      code: 'unauthenticated',
      identity: null,
      act: 'POST /v1/policy/reload',
      repeats: 0,
    });
    // The token itself is never in the log, only its id.
    const all = JSON.stringify(entries);
    expect(all.includes(created.token)).toBe(false);
  }, 120_000);
});
