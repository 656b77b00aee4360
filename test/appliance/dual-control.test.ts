/**
 * Dual control of the registrar's trust on the real appliance (swtpm, SoftHSM2, LevelDB,
 * the audit log): replacing the EK CA bundle and disabling/enabling a reference policy
 * need M=2 distinct operator approvals bound to exactly that act, single use, expiring;
 * the change takes effect for the next enrollment or quote, survives a restart, and is
 * audited. Also: refused operator attempts are audited, bounded, without the token.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAppliance, type Appliance } from '../../src/appliance.js';
import { qualifyingData } from '../../src/attestation/index.js';
import { bundleSha256 } from '../../src/attestation/registrar.js';
import { sessionKey } from '../../src/attestation/testing/fakes.js';
import { SoftEk, SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import type { App } from '../../src/http/app.js';
import { buildApplianceApp } from '../../src/http/server.js';
import { makeCa, makeLeaf } from '../../src/operators/testing/certs.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { checkRouteGuards } from '../operators/route-guard.js';
import { repoRoot, writeEkTrust } from '../rig/sim.js';
import { makeEkCa, type OpensslCa } from './dual-control.rig.js';

interface ErrorAnswer {
  error: { code: string; message: string; details?: Record<string, unknown> };
}
interface EkCaAnswer {
  sha256: string;
  source: string;
  replacedBy?: string;
  certificates: { subject: string; sha256: string }[];
}
interface Entry {
  type: string;
  subject: string;
  decision?: string;
  reasons?: string[];
}

let rig: ApplianceRig;
let caOld: OpensslCa;
let caNew: OpensslCa;
let caOther: OpensslCa;
// The appliance's clock: real time, moved forward (never back) to expire approvals.
const clock = { skewMs: 0 };
const now = () => Date.now() + clock.skewMs;

let appliance: Appliance;
let app: App;
const tokens: Record<string, string> = {};
const runtimeTpm = new SoftTpm('ecc');

function config(): AppConfig {
  return loadConfig(
    rig.env({
      GRANTOR_REFERENCE_POLICIES: join(rig.dir, 'reference-policies.json'),
      GRANTOR_OPERATOR_REFUSAL_MAX_PER_WINDOW: '1000',
    }),
    repoRoot,
  );
}

async function start(): Promise<void> {
  appliance = await openAppliance(config(), { now });
  app = await buildApplianceApp(appliance);
}

async function stop(): Promise<void> {
  await app.close();
  await appliance.close();
}

const as = (who: string) => ({ authorization: `Bearer ${tokens[who] ?? 'missing'}` });
const code = (res: { json: () => unknown }) => (res.json() as ErrorAnswer).error.code;

async function approvalFor(
  act: string,
  params: Record<string, string>,
  approvers: string[],
): Promise<string> {
  const req = await app.inject({
    method: 'POST',
    url: '/v1/approvals',
    headers: as('alice'),
    payload: { act, params },
  });
  expect(req.statusCode).toBe(201);
  const id = req.json<{ id: string }>().id;
  for (const who of approvers) {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/approvals/${id}/approve`,
      headers: as(who),
    });
    expect(res.statusCode).toBe(200);
  }
  return id;
}

/** Enroll a software runtime whose EK certificate `ca` issued; the answer as is. */
async function enroll(ca: OpensslCa, name: string, labels: Record<string, string> = {}) {
  const ek = new SoftEk();
  const cert = await ca.issue(ek);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/runtimes',
    payload: {
      name,
      labels,
      ekCertificate: cert.toString('base64'),
      ekPublic: ek.ekPublicBytes.toString('base64'),
      akPublic: runtimeTpm.akPublicBytes.toString('base64'),
    },
  });
  return { res, ek };
}

async function activeRuntime(name: string, labels: Record<string, string>): Promise<string> {
  const { res, ek } = await enroll(caNew, name, labels);
  expect(res.statusCode).toBe(201);
  const e = res.json<{ runtimeId: string; credentialBlob: string; encryptedSecret: string }>();
  const act = await app.inject({
    method: 'POST',
    url: `/v1/runtimes/${e.runtimeId}/activation`,
    payload: { secret: ek.activateEnrollment(e, runtimeTpm) },
  });
  expect(act.json<{ state: string }>().state).toBe('active');
  parentEks.set(e.runtimeId, ek);
  // What the runtime asked for is a request: an operator assigns the labels.
  const assigned = await app.inject({
    method: 'PUT',
    url: `/v1/runtimes/${e.runtimeId}/labels`,
    headers: as('alice'),
    payload: { labels },
  });
  expect(assigned.statusCode).toBe(200);
  return e.runtimeId;
}

/** The EK each runtime enrolled with: the shared AK quotes as its child (qualifiedSigner). */
const parentEks = new Map<string, SoftEk>();

async function attest(runtimeId: string) {
  runtimeTpm.parentEk = parentEks.get(runtimeId)?.ekPublic;
  const ch = await app.inject({ method: 'POST', url: `/v1/runtimes/${runtimeId}/challenges` });
  expect(ch.statusCode).toBe(201);
  const nonce = Buffer.from(ch.json<{ nonce: string }>().nonce, 'base64');
  const key = sessionKey();
  return app.inject({
    method: 'POST',
    url: `/v1/runtimes/${runtimeId}/attestations`,
    payload: {
      ...runtimeTpm.quote(nonce, qualifyingData(nonce, key), {
        selection: [{ bank: 'sha256', pcrs: [0] }],
      }),
      sessionKey: key,
    },
  });
}

async function auditEntries(): Promise<Entry[]> {
  const res = await app.inject({
    url: '/v1/audit/entries?from=0&limit=1000',
    headers: as('auditor'),
  });
  expect(res.statusCode).toBe(200);
  return res.json<{ entries: Entry[] }>().entries;
}

beforeAll(async () => {
  rig = await startApplianceRig('dual');
  const { dir } = rig;
  caOld = await makeEkCa(dir, 'old-ek-ca');
  caNew = await makeEkCa(dir, 'new-ek-ca');
  caOther = await makeEkCa(dir, 'other-ek-ca');
  // The runtimes here are software TPMs whose EK certificates these CAs issue: the
  // appliance starts out trusting the old one, in place of the rig swtpm's own CA.
  await writeEkTrust(dir, caOld.pem);
  const pcr0 = runtimeTpm.value('sha256', 0).toString('hex');
  await writeFile(
    join(dir, 'reference-policies.json'),
    JSON.stringify([
      { name: 'fleet-a', selector: { fleet: 'a' }, pcrs: { sha256: { '0': [pcr0] } } },
      { name: 'fleet-b', selector: { fleet: 'b' }, pcrs: { sha256: { '0': [pcr0] } } },
    ]),
  );
  await provisionOnTpm(config());
  await start();
  const ops = appliance.operators.tokens;
  for (const [name, role] of [
    ['alice', 'operator'],
    ['bob', 'operator'],
    ['carol', 'operator'],
    ['dave', 'operator'],
    ['auditor', 'auditor'],
    ['custodian', 'key_custodian'],
    ['kai', 'key_custodian'],
    ['kit', 'key_custodian'],
  ] as const) {
    tokens[name] = (await ops.create({ role, actor: name })).token;
  }
});

afterAll(async () => {
  await stop().catch(() => undefined);
  await rig.destroy();
});

describe('replacing the trusted EK CA bundle', () => {
  it('serves the current bundle to auditors and operators, not to others', async () => {
    const res = await app.inject({ url: '/v1/attestation/ek-ca', headers: as('auditor') });
    expect(res.statusCode).toBe(200);
    const body = res.json<EkCaAnswer>();
    expect(body.source).toBe('configuration');
    expect(body.sha256).toBe(bundleSha256(caOld.pem));
    expect(body.certificates.map((c) => c.subject)).toEqual(['CN=old-ek-ca']);
    const custodian = await app.inject({ url: '/v1/attestation/ek-ca', headers: as('custodian') });
    expect(code(custodian)).toBe('forbidden');
    // Before: the old CA's EK certificates enroll, the new CA's do not.
    expect((await enroll(caOld, 'before-old')).res.statusCode).toBe(201);
    const early = await enroll(caNew, 'before-new');
    expect(code(early.res)).toBe('ek_certificate_untrusted');
  });

  it('refuses invalid bundles with ek_ca_bundle_invalid, before any approval is used', async () => {
    const put = (pem: string) =>
      app.inject({
        method: 'PUT',
        url: '/v1/attestation/ek-ca',
        headers: as('alice'),
        payload: { pem },
      });
    const expired = await makeCa('expired CA', new Date(Date.now() - 400 * 86_400_000));
    const ca = await makeCa('a CA');
    const leaf = Buffer.from(await makeLeaf(ca)).toString('base64');
    const leafPem = `-----BEGIN CERTIFICATE-----\n${leaf.replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
    const cases: [string, string][] = [
      ['no certificate here', 'empty'],
      [
        `${caNew.pem}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`,
        'not_a_certificate',
      ],
      ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'unparseable'],
      [leafPem, 'not_ca'],
      [expired.pem, 'expired'],
    ];
    for (const [pem, reason] of cases) {
      const res = await put(pem);
      expect([reason, res.statusCode, code(res)]).toEqual([reason, 400, 'ek_ca_bundle_invalid']);
      expect(res.json<ErrorAnswer>().error.details?.reason).toBe(reason);
    }
    expect(code(await put(''))).toBe('bad_request');
  });

  it('needs two distinct operator approvals bound to the bundle digest, used once', async () => {
    const bundle = caNew.pem;
    const sha = bundleSha256(bundle);
    const put = (who: string, pem = bundle) =>
      app.inject({
        method: 'PUT',
        url: '/v1/attestation/ek-ca',
        headers: as(who),
        payload: { pem },
      });

    // Wrong roles, on the act and on the approvals.
    expect(code(await put('auditor'))).toBe('forbidden');
    expect(code(await put('custodian'))).toBe('forbidden');
    expect(code(await put('alice'))).toBe('approval_required');

    const id = await approvalFor('ekca.replace', { bundleSha256: sha }, ['bob']);
    const one = await put('alice');
    expect(one.statusCode).toBe(409);
    expect(code(one)).toBe('approval_required');
    const byCustodian = await app.inject({
      method: 'POST',
      url: `/v1/approvals/${id}/approve`,
      headers: as('custodian'),
    });
    expect(code(byCustodian)).toBe('forbidden');
    const twice = await app.inject({
      method: 'POST',
      url: `/v1/approvals/${id}/approve`,
      headers: as('bob'),
    });
    expect(code(twice)).toBe('approval_duplicate_actor');

    // Two approvals for another bundle do not replace this one.
    await approvalFor('ekca.replace', { bundleSha256: bundleSha256(caOther.pem) }, [
      'bob',
      'carol',
    ]);
    expect(code(await put('alice'))).toBe('approval_required');

    const approved = await app.inject({
      method: 'POST',
      url: `/v1/approvals/${id}/approve`,
      headers: as('carol'),
    });
    expect(approved.statusCode).toBe(200);
    const done = await put('alice');
    expect(done.statusCode).toBe(200);
    const body = done.json<EkCaAnswer>();
    expect(body).toMatchObject({ sha256: sha, source: 'replaced' });
    expect(body.replacedBy).toMatch(/^tok_/);
    expect(body.certificates.map((c) => c.subject)).toEqual(['CN=new-ek-ca']);

    const again = await put('alice');
    expect(again.statusCode).toBe(409);
    expect(code(again)).toBe('approval_reused');
  });

  it('takes effect at once: the old CA no longer enrolls, the new CA does', async () => {
    const old = await enroll(caOld, 'after-old');
    expect(old.res.statusCode).toBe(422);
    expect(code(old.res)).toBe('ek_certificate_untrusted');
    const fresh = await enroll(caNew, 'after-new');
    expect(fresh.res.statusCode).toBe(201);
  });

  it('refuses approvals that have expired', async () => {
    // The earlier pair for this digest is still open (one open request per target): let
    // it expire.
    clock.skewMs += 2 * 3600 * 1000;
    const res = await app.inject({
      method: 'PUT',
      url: '/v1/attestation/ek-ca',
      headers: as('alice'),
      payload: { pem: caOther.pem },
    });
    expect(res.statusCode).toBe(409);
    expect(code(res)).toBe('approval_expired');
    const current = await app.inject({ url: '/v1/attestation/ek-ca', headers: as('alice') });
    expect(current.json<EkCaAnswer>().sha256).toBe(bundleSha256(caNew.pem));
  });

  it('audits the replacement with the actor and the bundle digest', async () => {
    const entries = await auditEntries();
    const replaced = entries.filter((e) => e.type === 'attestation.ekca.replace');
    expect(replaced).toHaveLength(1);
    expect(replaced[0]?.subject).toBe(`sha256:${bundleSha256(caNew.pem)}`);
    expect(replaced[0]?.reasons?.[0]).toMatch(/^operator:tok_/);
    expect(replaced[0]?.reasons).toContain(`previous:sha256:${bundleSha256(caOld.pem)}`);
    const consumed = entries.filter(
      (e) => e.type === 'approval.consumed' && e.reasons?.[0] === 'ekca.replace',
    );
    expect(consumed).toHaveLength(1);
    expect(consumed[0]?.reasons?.length).toBe(3);
  });
});

describe('disabling and enabling a reference policy', () => {
  let runtimeId: string;
  let attestationId: string;

  it('lists the policies for auditors', async () => {
    const res = await app.inject({
      url: '/v1/attestation/reference-policies',
      headers: as('auditor'),
    });
    expect(res.json()).toEqual({
      policies: [
        { name: 'fleet-a', selector: { fleet: 'a' }, enabled: true },
        { name: 'fleet-b', selector: { fleet: 'b' }, enabled: true },
      ],
    });
    runtimeId = await activeRuntime('fleet-a-agent', { fleet: 'a' });
    const ok = await attest(runtimeId);
    expect(ok.json<{ verdict: string }>().verdict).toBe('trusted');
    attestationId = ok.json<{ attestationId: string }>().attestationId;
    expect(appliance.attestation.sessionFor(attestationId)?.runtimeId).toBe(runtimeId);
  });

  it('disables only with two approvals; then quotes the policy alone matched are refused', async () => {
    const disable = (name = 'fleet-a', who = 'alice') =>
      app.inject({
        method: 'POST',
        url: `/v1/attestation/reference-policies/${name}/disable`,
        headers: as(who),
      });
    expect(code(await disable('fleet-a', 'auditor'))).toBe('forbidden');
    expect(code(await disable())).toBe('approval_required');
    expect(code(await disable('no-such-policy'))).toBe('reference_policy_not_found');
    const id = await approvalFor('refpolicy.disable', { name: 'fleet-a' }, ['bob']);
    expect(code(await disable())).toBe('approval_required');
    // Approvals to disable another policy do not count.
    await approvalFor('refpolicy.disable', { name: 'fleet-b' }, ['bob', 'carol']);
    expect(code(await disable())).toBe('approval_required');
    await app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers: as('carol') });
    const done = await disable();
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ name: 'fleet-a', enabled: false });
    // The session verified against it ends at once (no more session-mode grants).
    expect(appliance.attestation.sessionFor(attestationId)).toBeUndefined();

    const refused = await attest(runtimeId);
    expect(refused.statusCode).toBe(409);
    expect(code(refused)).toBe('reference_policy_unknown');
    const view = await app.inject({ url: `/v1/runtimes/${runtimeId}`, headers: as('auditor') });
    expect(view.json<{ referencePolicy: string | null }>().referencePolicy).toBeNull();
    expect(code(await disable())).toBe('reference_policy_state_invalid');
  });

  it('keeps the replaced bundle and the disabled policy across a restart', async () => {
    await stop();
    await start();
    const ca = await app.inject({ url: '/v1/attestation/ek-ca', headers: as('auditor') });
    expect(ca.json<EkCaAnswer>()).toMatchObject({
      sha256: bundleSha256(caNew.pem),
      source: 'replaced',
    });
    const list = await app.inject({
      url: '/v1/attestation/reference-policies',
      headers: as('auditor'),
    });
    expect(list.json<{ policies: { name: string; enabled: boolean }[] }>().policies).toMatchObject([
      { name: 'fleet-a', enabled: false },
      { name: 'fleet-b', enabled: true },
    ]);
    expect(code(await attest(runtimeId))).toBe('reference_policy_unknown');
    expect(code((await enroll(caOld, 'restart-old')).res)).toBe('ek_certificate_untrusted');
  });

  it('re-enables only with two approvals of its own; then the runtime is trusted again', async () => {
    const enable = () =>
      app.inject({
        method: 'POST',
        url: '/v1/attestation/reference-policies/fleet-a/enable',
        headers: as('alice'),
      });
    expect(code(await enable())).toBe('approval_required');
    await approvalFor('refpolicy.enable', { name: 'fleet-a' }, ['bob', 'carol']);
    const done = await enable();
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ name: 'fleet-a', enabled: true });
    expect(code(await enable())).toBe('reference_policy_state_invalid');
    const ok = await attest(runtimeId);
    expect(ok.json<{ verdict: string }>().verdict).toBe('trusted');
    const types = (await auditEntries()).map((e) => e.type);
    expect(types).toContain('attestation.refpolicy.disable');
    expect(types).toContain('attestation.refpolicy.enable');
  });
});

describe('dual control counts people (issue 14)', () => {
  const post = (url: string, who: string, payload?: unknown) =>
    app.inject({
      method: 'POST',
      url,
      headers: as(who),
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });
  const request = (who: string, act: string, params: Record<string, string>) =>
    post('/v1/approvals', who, { act, params });
  const approve = (who: string, id: string) => post(`/v1/approvals/${id}/approve`, who);
  const disable = (name: string) =>
    post(`/v1/attestation/reference-policies/${name}/disable`, 'alice');

  it('refuses the requester approving its own request', async () => {
    const res = await request('alice', 'refpolicy.enable', { name: 'no-such' });
    expect(res.statusCode).toBe(201);
    const own = await approve('alice', res.json<{ id: string }>().id);
    expect(own.statusCode).toBe(403);
    expect(code(own)).toBe('approval_own_request');
  });

  it('refuses a spare request for an act and parameters already open', async () => {
    // fleet-b: bob and carol approved a request earlier that was never used.
    const spare = await request('dave', 'refpolicy.disable', { name: 'fleet-b' });
    expect(spare.statusCode).toBe(409);
    expect(code(spare)).toBe('approval_request_open');
  });

  it('checks each approver again when the approvals are used: a revoked token no longer counts', async () => {
    const list = await app.inject({ url: '/v1/operator-tokens', headers: as('alice') });
    expect(list.statusCode).toBe(200);
    const carol = list
      .json<{ tokens: { id: string; person: string; revokedAt?: string }[] }>()
      .tokens.find((t) => t.person === 'carol' && t.revokedAt === undefined);
    if (carol === undefined) throw new Error('no token for carol');
    // Revoked over the API, the appliance running: audited with the person.
    const revoked = await post(`/v1/operator-tokens/${carol.id}/revoke`, 'alice');
    expect(revoked.statusCode).toBe(200);
    expect(code(await app.inject({ url: '/v1/approvals', headers: as('carol') }))).toBe(
      'unauthenticated',
    );
    const refused = await disable('fleet-b');
    expect(refused.statusCode).toBe(409);
    expect(code(refused)).toBe('approval_required');
    const open = (await app.inject({ url: '/v1/approvals', headers: as('alice') }))
      .json<{
        approvals: { id: string; act: string; params: { name?: string }; consumedAt?: string }[];
      }>()
      .approvals.find((a) => a.act === 'refpolicy.disable' && a.params.name === 'fleet-b');
    expect(open?.consumedAt).toBeUndefined();
    expect((await approve('dave', open?.id ?? '')).statusCode).toBe(200);
    const done = await disable('fleet-b');
    expect(done.statusCode).toBe(200);
    const entries = await auditEntries();
    const revocation = entries.find((e) => e.type === 'operator.token_revoked');
    expect(revocation).toMatchObject({ subject: carol.id });
    expect(revocation?.reasons).toContain('person:carol');
    expect(revocation?.reasons?.some((r) => r.startsWith('by:alice:tok_'))).toBe(true);
    const consumed = entries.filter(
      (e) => e.type === 'approval.consumed' && e.reasons?.[0] === 'refpolicy.disable',
    );
    expect(consumed.at(-1)?.reasons?.some((r) => r.endsWith(':carol'))).toBe(false);
    expect(consumed.at(-1)?.reasons?.some((r) => r.endsWith(':dave'))).toBe(true);
  });

  it('caps the open requests of one person (20 000 requests are not accepted)', async () => {
    let accepted = 0;
    let refusal: string | undefined;
    for (let i = 0; i < 20_000 && refusal === undefined; i++) {
      const res = await request('dave', 'refpolicy.enable', { name: `flood-${i}` });
      if (res.statusCode === 201) accepted += 1;
      else refusal = code(res);
    }
    expect(refusal).toBe('approval_request_limit');
    expect(accepted).toBe(16);
    // Another person is not held up by dave's flood.
    expect((await request('bob', 'refpolicy.enable', { name: 'flood-0-bob' })).statusCode).toBe(
      201,
    );
  });

  it('checks the key before using key.destroy approvals', async () => {
    const keys = await app.inject({ url: '/v1/keys', headers: as('custodian') });
    expect(keys.statusCode).toBe(200);
    const listed = keys.json<{ keys: { kid: string; state: string }[] }>().keys;
    // The active key and the next one (published before it signs) are not destroyable.
    const active = listed.find((k) => k.state === 'active');
    const next = listed.find((k) => k.state === 'next');
    if (active === undefined || next === undefined) throw new Error('no active or next key');
    const missing = 'A'.repeat(43);
    for (const kid of [active.kid, next.kid, missing]) {
      const req = await request('custodian', 'key.destroy', { kid });
      const id = req.json<{ id: string }>().id;
      await approve('kai', id);
      await approve('kit', id);
      const res = await post(`/v1/keys/${kid}/destroy`, 'custodian');
      expect(code(res)).toBe(kid === missing ? 'key_not_found' : 'key_state_invalid');
      const record = await app.inject({ url: `/v1/approvals/${id}`, headers: as('custodian') });
      expect(record.json<{ consumedAt?: string }>().consumedAt).toBeUndefined();
    }
  });

  it('rotates the audit key only under dual control', async () => {
    const rotate = () => post('/v1/keys/rotate', 'custodian', { purpose: 'audit' });
    const alone = await rotate();
    expect(alone.statusCode).toBe(409);
    expect(code(alone)).toBe('approval_required');
    const req = await request('custodian', 'audit_key.rotate', {});
    const id = req.json<{ id: string }>().id;
    await approve('kai', id);
    await approve('kit', id);
    const done = await rotate();
    expect(done.statusCode).toBe(200);
    expect(done.json<{ active: { purpose: string } }>().active.purpose).toBe('audit');
  });

  it('limits on-demand rotations (bucket rotate), after authentication', async () => {
    // Two rotation calls above; the burst is 3.
    const rotate = (who: string) => post('/v1/keys/rotate', who);
    for (let i = 0; i < 5; i++) expect(code(await rotate('auditor'))).toBe('forbidden');
    expect((await rotate('custodian')).statusCode).toBe(200);
    const limited = await rotate('kai');
    expect(limited.statusCode).toBe(429);
    expect(code(limited)).toBe('rate_limited');
    expect(limited.headers['retry-after']).toBeDefined();
  });
});

describe('refused operator attempts', () => {
  it('are audited with route, reason and identity, never the token, one entry per window', async () => {
    const before = (await auditEntries()).length;
    const garbage = `gop_${'ab'.repeat(8)}${'Z'.repeat(43)}`;
    const grant = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJydF8xIn0.c2ln';
    const ops = appliance.operators.tokens;
    const expiring = await ops.create({ role: 'operator', actor: 'short-lived', ttlSeconds: 60 });
    const revoked = await ops.create({ role: 'operator', actor: 'gone' });
    await ops.revoke(revoked.info.id);
    clock.skewMs += 61_000;
    const attempts: [Record<string, string>, string, string, string][] = [
      [{}, 'GET', '/v1/keys', 'unauthenticated'],
      [{ authorization: `Bearer ${garbage}` }, 'GET', '/v1/keys', 'unauthenticated'],
      [{ authorization: `Bearer ${expiring.token}` }, 'GET', '/v1/keys', 'unauthenticated'],
      [{ authorization: `Bearer ${revoked.token}` }, 'GET', '/v1/keys', 'unauthenticated'],
      [{ authorization: `Bearer ${grant}` }, 'GET', '/v1/keys', 'unauthenticated'],
      [as('auditor'), 'GET', '/v1/keys', 'forbidden'],
      [as('alice'), 'POST', '/v1/runtimes/rt_someone/challenges', 'forbidden'],
    ];
    for (const [headers, method, url, want] of attempts) {
      // A flood of the same attempt: one entry, the rest counted.
      for (let i = 0; i < 20; i++) {
        const res = await app.inject({ method: method as 'GET', url, headers });
        expect(code(res)).toBe(want);
      }
    }
    const refused = (await auditEntries())
      .slice(before)
      .filter((e) => e.type === 'operator.refused');
    expect(refused.map((e) => e.reasons?.[0])).toEqual([
      'credential_missing',
      'credential_invalid',
      'credential_invalid',
      'credential_invalid',
      'credential_not_operator',
      'role_forbidden',
      'operator_on_runtime_route',
    ]);
    expect(refused.map((e) => e.decision)).toEqual([
      'unauthenticated',
      'unauthenticated',
      'unauthenticated',
      'unauthenticated',
      'unauthenticated',
      'forbidden',
      'forbidden',
    ]);
    expect(refused[0]?.reasons).toContain('GET /v1/keys');
    expect(refused[1]?.subject).toBe(`tok_${'ab'.repeat(8)}`);
    // Expired and revoked tokens: recorded by their id, not their secret.
    expect(refused[2]?.subject).toBe(expiring.info.id);
    expect(refused[3]?.subject).toBe(revoked.info.id);
    expect(refused[5]?.subject).toMatch(/^tok_[0-9a-f]{16}$/);
    expect(refused[6]?.reasons).toContain('POST /v1/runtimes/:runtimeId/challenges');
    // Each flood of 20 is one entry; its 19 repeats are counted, not written.
    expect(refused).toHaveLength(7);
    const text = JSON.stringify(await auditEntries());
    for (const secret of [
      garbage,
      grant,
      expiring.token,
      revoked.token,
      ...Object.values(tokens),
    ]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.slice(20));
    }
  });

  it('leaves every route declared and guarded', async () => {
    const report = await checkRouteGuards(app, {
      auditor: tokens.auditor ?? '',
      operator: tokens.alice ?? '',
      key_custodian: tokens.custodian ?? '',
    });
    expect(report.failures).toEqual([]);
    expect(report.undeclared).toEqual([]);
    expect(report.checked).toContain('PUT /v1/attestation/ek-ca');
    // The gateway routes refuse operators and anyone not enrolled (issue 18).
    expect(report.checked).toEqual(
      expect.arrayContaining([
        'POST /v1/grants/{grantId}/redeem',
        'POST /v1/grants/{grantId}/outcome',
        'POST /v1/gateways',
      ]),
    );
  });
});

describe('adding and replacing a reference policy (golden values, issue 19)', () => {
  const golden = {
    name: 'fleet-c',
    selector: { fleet: 'c' },
    measuredBoot: { pcrs: { sha256: [0] }, ima: { deny: ['ab'.repeat(32)] } },
  };
  const put = (name: string, policy: unknown) =>
    app.inject({
      method: 'PUT',
      url: `/v1/attestation/reference-policies/${name}`,
      headers: as('alice'),
      payload: { policy },
    });

  // carol's token was revoked above (the approver check): bob and dave approve here.
  it('refuses an invalid policy before any approval is used, then needs two approvals bound to its digest', async () => {
    expect(code(await put('fleet-c', { ...golden, measuredBoot: { pcrs: {} } }))).toBe(
      'config_invalid',
    );
    expect(code(await put('other-name', golden))).toBe('config_invalid');
    expect(code(await put('fleet-c', golden))).toBe('approval_required');
    const sha = appliance.attestationTrust.checkPutReferencePolicy('fleet-c', golden).sha256;
    // Approvals for another policy body do not put this one.
    await approvalFor('refpolicy.put', { name: 'fleet-c', policySha256: 'ab'.repeat(32) }, [
      'bob',
      'dave',
    ]);
    expect(code(await put('fleet-c', golden))).toBe('approval_required');
    await approvalFor('refpolicy.put', { name: 'fleet-c', policySha256: sha }, ['bob', 'dave']);
    const done = await put('fleet-c', golden);
    expect(done.statusCode).toBe(200);
    expect(done.json()).toEqual({ name: 'fleet-c', sha256: sha, replaced: false, versions: 1 });
    // Takes effect at once: a runtime of fleet c must now send its event log.
    const runtimeId = await activeRuntime('fleet-c-agent', { fleet: 'c' });
    expect(code(await attest(runtimeId))).toBe('event_log_required');
  });

  it('replaces a configured policy keeping the previous versions, audited, across a restart', async () => {
    const pcr0 = runtimeTpm.value('sha256', 0).toString('hex');
    const v2 = {
      name: 'fleet-b',
      selector: { fleet: 'b' },
      pcrs: { sha256: { '0': [pcr0, '00'.repeat(32)] } },
    };
    const sha = appliance.attestationTrust.checkPutReferencePolicy('fleet-b', v2).sha256;
    await approvalFor('refpolicy.put', { name: 'fleet-b', policySha256: sha }, ['bob', 'dave']);
    expect((await put('fleet-b', v2)).json()).toMatchObject({ replaced: true, versions: 2 });
    await stop();
    await start();
    const versions = await app.inject({
      url: '/v1/attestation/reference-policies/fleet-b/versions',
      headers: as('auditor'),
    });
    expect(versions.json()).toMatchObject({
      current: { policy: v2, sha256: sha, by: expect.any(String) as unknown },
      previous: [{ by: 'configuration' }],
    });
    const entries = (await auditEntries()).filter((e) => e.type === 'attestation.refpolicy.put');
    expect(entries.map((e) => [e.subject, e.decision])).toEqual([
      ['fleet-c', 'added'],
      ['fleet-b', 'replaced'],
    ]);
  });
});
