/**
 * Issue 12 on the real appliance (startApplianceServer over swtpm, SoftHSM2, LevelDB) and
 * a runtime swtpm driven by tpm2-tools: what a runtime is comes from operators, not from
 * the labels it sends; a squatted EK is freed by an operator's release; the inventory shows
 * the EK identity (cross-checked with openssl); the enrollment rules are replaced only under
 * dual control; a quote-mode violation is audited and ends the session. Expiry of a pending
 * enrollment needs a clock: it is tested on the real routes with the attestation harness.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import { jcsSha256Hex } from '../../src/shared/jcs.js';
import { startRealAppliance, type RealAppliance } from '../appliance/real.js';
import {
  attest,
  grantBody,
  quoted,
  sessionRequest,
  type Runtime,
  type SessionKeyPair,
} from '../grants/rig.js';
import { repoRoot } from '../rig/sim.js';
import { activateWithTools, startHarness, type Harness } from './harness.js';
import { createEccAk } from './tools.js';

const run = promisify(execFile);

interface ErrorReply {
  error: { code: string };
}
interface View {
  runtimeId: string;
  state: string;
  labels: Record<string, string>;
  requestedLabels: Record<string, string>;
  labelSource: string | null;
  ek: {
    publicKeySha256: string | null;
    certificate: { issuer: string; serialNumber: string } | null;
    tpm: { manufacturer: string; model: string; version: string } | null;
  };
  lastAttestation: { verdict: string; reasons: string[] } | null;
  released: { by: string } | null;
}

let real: RealAppliance;
const tokens: Record<string, string> = {};
const ids: Record<string, string> = {};
const as = (who: string) => ({ authorization: `Bearer ${tokens[who] ?? 'missing'}` });
let ekDer: Buffer;
let akPublic: Buffer;

async function inject(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  who?: string,
  payload?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await real.server.app.inject({
    method,
    url,
    ...(who === undefined ? {} : { headers: as(who) }),
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
  return { status: res.statusCode, body: res.json<unknown>() };
}

const codeOf = (r: { body: unknown }): string => (r.body as ErrorReply).error.code;

/** Enroll the runtime TPM's RSA EK certificate with `ak`, as a runtime would send it. */
function enrollBody(name: string, labels: Record<string, string>, ak = akPublic) {
  return {
    name,
    labels,
    ekCertificate: ekDer.toString('base64'),
    akPublic: ak.toString('base64'),
  };
}

async function approve(act: string, params: Record<string, string>): Promise<void> {
  const req = await inject('POST', '/v1/approvals', 'alice', { act, params });
  expect(req.status).toBe(201);
  const id = (req.body as { id: string }).id;
  for (const who of ['bob', 'carol'])
    expect((await inject('POST', `/v1/approvals/${id}/approve`, who)).status).toBe(200);
}

beforeAll(async () => {
  real = await startRealAppliance('identity');
  const ops = real.server.appliance?.operators.tokens;
  if (ops === undefined) throw new Error('the appliance did not start');
  for (const name of ['alice', 'bob', 'carol']) {
    const made = await ops.create({ role: 'operator', actor: name });
    tokens[name] = made.token;
    ids[name] = made.info.id;
  }
  tokens.aude = (await ops.create({ role: 'auditor', actor: 'aude' })).token;
  await createEccAk(real.tools);
  await real.tools.tpm2('nvread', ['0x01c00002', '-o', 'ek.der']);
  ekDer = await real.tools.read('ek.der');
  akPublic = await real.tools.read('ak.pub');
}, 180_000);

afterAll(async () => {
  await real.close();
});

describe('operator-owned runtime identity on the real appliance', () => {
  let runtime: Runtime;
  let view: View;
  let session: { attestationId: string; key: SessionKeyPair };
  /** The runtime's usual request, signed with its current session. */
  const askGrant = () =>
    inject('POST', '/v1/grants', undefined, sessionRequest({ runtime, session }));

  it('a squatter holding the EK certificate blocks it only until an operator releases it', async () => {
    // Anyone has the EK certificate (public) and can make an AK of their own.
    const squat = await inject(
      'POST',
      '/v1/runtimes',
      undefined,
      enrollBody('squatter', {}, new SoftTpm('ecc').akPublicBytes),
    );
    expect(squat.status).toBe(201);
    const squatter = (squat.body as { runtimeId: string }).runtimeId;
    const blocked = await inject('POST', '/v1/runtimes', undefined, enrollBody('owner', {}));
    expect(blocked.status).toBe(409);
    expect(codeOf(blocked)).toBe('ek_already_enrolled');
    expect(codeOf(await inject('POST', `/v1/runtimes/${squatter}/release`, 'aude'))).toBe(
      'forbidden',
    );
    const released = await inject('POST', `/v1/runtimes/${squatter}/release`, 'alice');
    expect(released.status).toBe(200);
    const freed = released.body as View;
    expect(freed.state).toBe('revoked');
    expect(freed.released?.by).toBe(ids.alice);
    const again = await inject('POST', `/v1/runtimes/${squatter}/release`, 'alice');
    expect(codeOf(again)).toBe('runtime_state_invalid');
  });

  it('labels the runtime sends are a request: it is active with none, and policies see none', async () => {
    const res = await inject(
      'POST',
      '/v1/runtimes',
      undefined,
      enrollBody('owner', { team: 'support' }),
    );
    expect(res.status).toBe(201);
    const e = res.body as { runtimeId: string; credentialBlob: string; encryptedSecret: string };
    const secret = await activateWithTools(real.tools, e.credentialBlob, e.encryptedSecret);
    const act = await inject('POST', `/v1/runtimes/${e.runtimeId}/activation`, undefined, {
      secret: secret.toString('base64'),
    });
    expect(act.body).toEqual({ runtimeId: e.runtimeId, state: 'active' });
    runtime = { runtimeId: e.runtimeId, ak: 'ak.ctx' };
    const read = await inject('GET', `/v1/runtimes/${runtime.runtimeId}`, 'aude');
    view = read.body as View;
    expect(view.labels).toEqual({});
    expect(view.requestedLabels).toEqual({ team: 'support' });
    expect(view.labelSource).toBe('rule:rig');
    session = await attest(real.rig, runtime);
    const ask = await askGrant();
    expect(ask.status).toBe(403);
    expect(codeOf(ask)).toBe('policy_denied');
  });

  it('shows the EK identity as openssl and tpm2-tools compute it', async () => {
    const tcti = real.runtimeTpm.tcti;
    const { stdout } = await run(join(repoRoot, 'scripts/sim/ek-fingerprint'), [tcti]);
    // The RSA EK (0x01c00002) is the first line.
    expect(view.ek.publicKeySha256).toBe(stdout.split('\n')[0]);
    const der = join(real.tools.dir, 'ek.der');
    const serial = (
      await run('openssl', ['x509', '-inform', 'der', '-in', der, '-noout', '-serial'])
    ).stdout
      .trim()
      .replace(/^serial=/, '');
    expect(view.ek.certificate?.serialNumber.toUpperCase()).toBe(serial.toUpperCase());
    expect(view.ek.certificate?.issuer).toContain('swtpm');
    expect(view.ek.tpm?.manufacturer).toMatch(/^id:[0-9A-F]{8}$/);
    expect(view.ek.tpm?.model).not.toBe('');
  });

  it('an operator assigns the labels: audited, the session ends, then the grant is allowed', async () => {
    const bad = await inject('PUT', `/v1/runtimes/${runtime.runtimeId}/labels`, 'alice', {
      labels: { 'no spaces': 'x' },
    });
    expect(bad.status).toBe(400);
    expect(
      codeOf(
        await inject('PUT', `/v1/runtimes/${runtime.runtimeId}/labels`, 'aude', {
          labels: { team: 'support' },
        }),
      ),
    ).toBe('forbidden');
    const put = await inject('PUT', `/v1/runtimes/${runtime.runtimeId}/labels`, 'alice', {
      labels: { team: 'support' },
    });
    expect(put.status).toBe(200);
    const assigned = put.body as View;
    expect(assigned.labels).toEqual({ team: 'support' });
    expect(assigned.labelSource).toBe(`operator:${ids.alice ?? ''}`);
    const stale = await askGrant();
    expect(codeOf(stale)).toBe('session_not_live');
    session = await attest(real.rig, runtime);
    const ok = await askGrant();
    expect(ok.status).toBe(201);
    const entries = await inject('GET', '/v1/audit/entries?from=0&limit=1000', 'aude');
    const types = (entries.body as { entries: { type: string }[] }).entries.map((e) => e.type);
    expect(types).toContain('runtime.labels.assign');
    expect(types).toContain('runtime.release');
  });

  it('lists runtimes with filters and a cursor, for operators and auditors only', async () => {
    const list = (q: string, who = 'aude') => inject('GET', `/v1/runtimes${q}`, who);
    const bySupport = await list('?label=team%3Dsupport');
    expect(bySupport.status).toBe(200);
    expect((bySupport.body as { runtimes: View[] }).runtimes.map((r) => r.runtimeId)).toEqual([
      runtime.runtimeId,
    ]);
    const revoked = (await list('?state=revoked')).body as { runtimes: View[] };
    expect(revoked.runtimes.map((r) => r.released !== null)).toEqual([true]);
    const page = (await list('?limit=1', 'alice')).body as { runtimes: View[]; nextCursor: string };
    expect(page.runtimes).toHaveLength(1);
    const rest = (await list(`?limit=1&after=${page.nextCursor}`)).body as { runtimes: View[] };
    expect(rest.runtimes).toHaveLength(1);
    expect(rest.runtimes[0]?.runtimeId).not.toBe(page.runtimes[0]?.runtimeId);
    expect((await list('?verdict=maybe')).status).toBe(400);
    expect((await list('?limit=201')).status).toBe(400);
    expect((await inject('GET', '/v1/runtimes')).status).toBe(401);
  });

  it('enrollment rules: refused whole when invalid, replaced only with two approvals', async () => {
    const set = {
      version: 1,
      rules: [{ name: 'all', match: {}, labels: { team: 'support' }, state: 'active' }],
    };
    const invalid = await inject('PUT', '/v1/attestation/enrollment-rules', 'alice', set);
    expect(invalid.status).toBe(422);
    expect(codeOf(invalid)).toBe('enrollment_rules_invalid');
    const valid = { ...set, rules: [{ ...set.rules[0], catchAll: true }] };
    const unapproved = await inject('PUT', '/v1/attestation/enrollment-rules', 'alice', valid);
    expect(codeOf(unapproved)).toBe('approval_required');
    const before = (await inject('GET', '/v1/attestation/enrollment-rules', 'aude')).body as {
      sha256: string;
    };
    // The digest the approvals bind is the one the appliance computes for this set.
    const checked = await inject('POST', '/v1/attestation/enrollment-rules/check', 'alice', valid);
    const rulesSha256 = (checked.body as { sha256: string }).sha256;
    // What the appliance binds is the JCS digest of the set (RFC 8785, here jcs()).
    expect(rulesSha256).toBe(jcsSha256Hex(valid));
    expect(
      codeOf(await inject('POST', '/v1/attestation/enrollment-rules/check', 'alice', set)),
    ).toBe('enrollment_rules_invalid');
    await approve('enrollrules.replace', { rulesSha256 });
    const replaced = await inject('PUT', '/v1/attestation/enrollment-rules', 'alice', valid);
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ sha256: rulesSha256, source: 'replaced' });
    expect(rulesSha256).not.toBe(before.sha256);
  });

  it('a quote-mode violation is audited, read as untrusted, and ends the session', async () => {
    await real.tools.tpm2('pcrextend', [`7:sha256=${'ab'.repeat(32)}`]);
    const body = await quoted(real.rig, runtime, grantBody(runtime));
    const res = await inject('POST', '/v1/grants', undefined, body);
    expect(codeOf(res)).toBe('pcr_policy_violation');
    const entries = await inject('GET', '/v1/audit/entries?from=0&limit=1000', 'aude');
    const last = (
      entries.body as { entries: { type: string; decision?: string; reasons?: string[] }[] }
    ).entries
      .filter((e) => e.type === 'runtime.quote')
      .at(-1);
    expect(last).toMatchObject({ decision: 'untrusted', reasons: ['pcr_policy_violation'] });
    const read = (await inject('GET', `/v1/runtimes/${runtime.runtimeId}`, 'aude')).body as View;
    expect(read.lastAttestation).toMatchObject({
      verdict: 'untrusted',
      reasons: ['pcr_policy_violation'],
    });
    const after = await askGrant();
    expect(codeOf(after)).toBe('session_not_live');
  });
});

describe('pending enrollments expire (real routes, the harness clock)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    await createEccAk(h.tools);
    await h.tools.tpm2('nvread', ['0x01c00002', '-o', 'ek.der']);
  }, 120_000);
  afterAll(async () => {
    await h.close();
  });

  it('a squatted EK is freed 15 minutes later, and the squatter cannot activate', async () => {
    const ek = (await h.tools.read('ek.der')).toString('base64');
    const post = (name: string, ak: Buffer) =>
      h.app.inject({
        method: 'POST',
        url: '/v1/runtimes',
        payload: { name, ekCertificate: ek, akPublic: ak.toString('base64') },
      });
    const squat = await post('squatter', new SoftTpm('ecc').akPublicBytes);
    expect(squat.statusCode).toBe(201);
    const squatter = squat.json<{ runtimeId: string }>().runtimeId;
    const own = await h.tools.read('ak.pub');
    expect((await post('owner', own)).json<ErrorReply>().error.code).toBe('ek_already_enrolled');
    h.clock.now = new Date(h.clock.now.getTime() + 15 * 60_000);
    const freed = await post('owner', own);
    expect(freed.statusCode).toBe(201);
    expect(h.audit.events.map((e) => e.type)).toContain('runtime.enroll_expired');
    const late = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${squatter}/activation`,
      payload: { secret: Buffer.alloc(32).toString('base64') },
    });
    expect(late.json<ErrorReply>().error.code).toBe('unknown_runtime');
  });
});
