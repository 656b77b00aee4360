/**
 * The policy set on the appliance as ./scripts/start composes it (startApplianceServer:
 * every plugin, the policy workers), over a policy directory of this file's own: GET
 * /v1/policy answers the active set, an operator's POST /v1/policy/reload activates the
 * changed files atomically (the very next grant decision uses them) or answers
 * policy_set_invalid with the previous set still deciding, the file watch does the same,
 * and every reload, by an operator or by the watch, is in the audit log.
 */
import { cp, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Appliance } from '../../src/appliance.js';
import type { App } from '../../src/http/app.js';
import { policySetHash, readPolicySource } from '../../src/policy/index.js';
import { jcsSha256Hex } from '../../src/shared/jcs.js';
import { createEccAk } from '../attestation/tools.js';
import {
  attest,
  enroll,
  grantBody,
  signed,
  type Runtime,
  type SessionKeyPair,
} from '../grants/rig.js';
import { repoRoot } from '../rig/sim.js';
import { startRealAppliance, type RealAppliance } from './real.js';

interface PolicyAnswer {
  hash: string;
  version: number;
  files: string[];
  policyIds: string[];
  actions: string[];
  activatedAt: string;
}
interface ErrorAnswer {
  error: { code: string; message: string; details?: { reasons?: string[] } };
}
interface Entry {
  seq: number;
  type: string;
  subject: string;
  decision?: string;
  reasons?: string[];
  digest: string;
}

const FREEZE = `@id("freeze-tickets")
@reason("tickets are frozen")
forbid (principal, action == Action::"tickets.read", resource);
`;
const BROKEN = `@id("broken")
permit (principal, action == Action::"tickets.read", resource) when { context.nope ==== };
`;

let policyDir: string;
let real: RealAppliance;
let appliance: Appliance;
let app: App;
let runtime: Runtime;
let session: { attestationId: string; key: SessionKeyPair };
const tokens = { operator: '', auditor: '', custodian: '' };
let operatorId: string;

const as = (who: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[who]}` });
const code = (res: { json: () => unknown }) => (res.json() as ErrorAnswer).error.code;

/** The hash docs/policy.md defines, recomputed from the files (not asked of the engine). */
async function filesHash(): Promise<string> {
  return policySetHash(await readPolicySource(policyDir, real.config().policy.schemaFile));
}

async function entries(): Promise<Entry[]> {
  const res = await app.inject({
    url: '/v1/audit/entries?from=0&limit=1000',
    headers: as('auditor'),
  });
  expect(res.statusCode).toBe(200);
  return res.json<{ entries: Entry[] }>().entries;
}

async function entriesOf(type: string): Promise<Entry[]> {
  return (await entries()).filter((e) => e.type === type);
}

async function getPolicy(): Promise<PolicyAnswer> {
  const res = await app.inject({ url: '/v1/policy', headers: as('auditor') });
  expect(res.statusCode).toBe(200);
  return res.json<PolicyAnswer>();
}

const reload = (who: keyof typeof tokens = 'operator') =>
  app.inject({ method: 'POST', url: '/v1/policy/reload', headers: as(who) });

async function requestGrant() {
  return app.inject({
    method: 'POST',
    url: '/v1/grants',
    payload: signed(grantBody(runtime), session.attestationId, session.key.privateKey),
  });
}

/** The `pol` claim of a compact JWS grant. */
function polOf(grant: string): unknown {
  const payload = grant.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { pol?: unknown }).pol;
}

/** Polls (the file watch is debounced) until `check` returns a value. */
async function eventually<T>(check: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  policyDir = await mkdtemp(join(tmpdir(), 'grantor-policy-reload-'));
  await cp(join(repoRoot, 'policies/default'), policyDir, { recursive: true });
  real = await startRealAppliance('policy-reload', { GRANTOR_POLICY_DIR: policyDir });
  const a = real.server.appliance;
  if (a === undefined) throw new Error('the appliance did not start');
  appliance = a;
  app = real.server.app;
  const ops = appliance.operators.tokens;
  const op = await ops.create({ role: 'operator', actor: 'olivia' });
  tokens.operator = op.token;
  operatorId = op.info.id;
  tokens.auditor = (await ops.create({ role: 'auditor', actor: 'aude' })).token;
  tokens.custodian = (await ops.create({ role: 'key_custodian', actor: 'kim' })).token;
  await createEccAk(real.tools);
  runtime = await enroll(
    real.rig,
    'support-agent',
    { team: 'support' },
    { ctx: 'ak.ctx', pub: 'ak.pub' },
    'rsa',
  );
  session = await attest(real.rig, runtime);
}, 180_000);

afterAll(async () => {
  await real.close();
  await rm(policyDir, { recursive: true, force: true });
});

describe('the policy set routes on the real appliance', () => {
  let startHash: string;
  let frozenHash: string;

  it('GET /v1/policy answers the active set: the hash recomputed from the files', async () => {
    const body = await getPolicy();
    startHash = await filesHash();
    expect(body.hash).toBe(startHash);
    expect(body.hash).toBe(appliance.policy.info()?.hash);
    expect(body.version).toBe(1);
    expect(body.files).toEqual(['guardrails.cedar', 'payments.cedar', 'tickets.cedar']);
    expect(body.policyIds.length).toBeGreaterThan(0);
    expect(body.actions).toContain('tickets.read');
    expect(body.activatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(body.activatedAt)).toBe(appliance.policy.info()?.activatedAt);
    // Operators see it too (the people who reload it).
    const byOperator = await app.inject({ url: '/v1/policy', headers: as('operator') });
    expect(byOperator.statusCode).toBe(200);
    expect(byOperator.json<PolicyAnswer>().hash).toBe(startHash);
  });

  it('refuses a missing credential (401) and the other roles (403); nothing is reloaded', async () => {
    const anon = await app.inject({ url: '/v1/policy' });
    expect(anon.statusCode).toBe(401);
    expect(code(anon)).toBe('unauthenticated');
    const custodian = await app.inject({ url: '/v1/policy', headers: as('custodian') });
    expect(custodian.statusCode).toBe(403);
    expect(code(custodian)).toBe('forbidden');

    const anonReload = await app.inject({ method: 'POST', url: '/v1/policy/reload' });
    expect(anonReload.statusCode).toBe(401);
    expect(code(anonReload)).toBe('unauthenticated');
    for (const who of ['auditor', 'custodian'] as const) {
      const res = await reload(who);
      expect(res.statusCode).toBe(403);
      expect(code(res)).toBe('forbidden');
    }
    expect(appliance.policy.info()?.version).toBe(1);
    expect(await entriesOf('policy.reloaded')).toEqual([]);
    // The refusals themselves are audited by the auth plugin.
    const refused = await entriesOf('operator.refused');
    expect(refused.some((e) => e.reasons?.includes('POST /v1/policy/reload'))).toBe(true);
  });

  it('refuses a body with members (400) before reloading', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/policy/reload',
      headers: as('operator'),
      payload: { dir: '/etc' },
    });
    expect(res.statusCode).toBe(400);
    expect(appliance.policy.info()?.version).toBe(1);
  });

  it('an operator reload activates the changed files and the very next grant decision uses them', async () => {
    const before = await requestGrant();
    expect(before.statusCode).toBe(201);
    expect(polOf(before.json<{ grant: string }>().grant)).toBe(startHash);

    await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
    const res = await reload();
    expect(res.statusCode).toBe(200);
    const body = res.json<PolicyAnswer>();
    frozenHash = await filesHash();
    expect(frozenHash).not.toBe(startHash);
    expect(body.hash).toBe(frozenHash);
    expect(body.version).toBe(2);
    expect(body.files).toContain('freeze.cedar');
    expect(body.policyIds).toContain('freeze-tickets');
    expect((await getPolicy()).hash).toBe(frozenHash);

    const after = await requestGrant();
    expect(after.statusCode).toBe(403);
    expect(code(after)).toBe('policy_denied');
    expect(after.json<ErrorAnswer>().error.details?.reasons).toContain('tickets are frozen');
    // The decision's audit entry names the new set.
    const decisions = (await entries()).filter((e) => e.reasons?.includes('tickets are frozen'));
    expect(decisions.at(-1)?.reasons?.[0]).toBe(`pol:${frozenHash}`);

    const reloaded = await entriesOf('policy.reloaded');
    expect(reloaded).toHaveLength(1);
    expect(reloaded[0]).toMatchObject({
      subject: frozenHash,
      reasons: ['version:2', `by:${operatorId}`],
      digest: jcsSha256Hex(appliance.policy.info()),
    });
    // Written after the operator.act entry of the same request (who, before the act).
    const acts = (await entriesOf('operator.act')).filter((e) =>
      e.reasons?.includes('POST /v1/policy/reload'),
    );
    expect(acts.at(-1)?.subject).toBe(operatorId);
    expect(acts.at(-1)?.seq).toBeLessThan(reloaded[0]?.seq ?? -1);
  });

  it('a refused set answers policy_set_invalid and the previous set keeps deciding', async () => {
    await writeFile(join(policyDir, 'broken.cedar'), BROKEN);
    const res = await reload();
    expect(res.statusCode).toBe(422);
    const error = res.json<ErrorAnswer>().error;
    expect(error.code).toBe('policy_set_invalid');
    expect(error.message.length).toBeGreaterThan(0);

    expect((await getPolicy()).hash).toBe(frozenHash);
    expect(appliance.policy.info()?.version).toBe(2);
    const still = await requestGrant();
    expect(still.statusCode).toBe(403);
    expect(still.json<ErrorAnswer>().error.details?.reasons).toContain('tickets are frozen');

    const refused = await entriesOf('policy.reload_refused');
    expect(refused).toHaveLength(1);
    const entry = refused[0];
    expect(entry?.subject).toBe(frozenHash);
    expect(entry?.decision).toBe('policy_set_invalid');
    expect(entry?.reasons?.[0]).toBe(`by:${operatorId}`);
    const reason = entry?.reasons?.[1] ?? '';
    expect(reason.length).toBeLessThanOrEqual(256);
    if (error.message.length <= 256) expect(reason).toBe(error.message);
    else expect(error.message.startsWith(reason.slice(0, -1))).toBe(true);
    expect(await entriesOf('policy.reloaded')).toHaveLength(1);
  });

  it('reloading the original files activates the original hash again and grants are allowed', async () => {
    await unlink(join(policyDir, 'broken.cedar'));
    await unlink(join(policyDir, 'freeze.cedar'));
    const res = await reload();
    expect(res.statusCode).toBe(200);
    expect(res.json<PolicyAnswer>()).toMatchObject({ hash: startHash, version: 3 });
    const granted = await requestGrant();
    expect(granted.statusCode).toBe(201);
    expect(polOf(granted.json<{ grant: string }>().grant)).toBe(startHash);
  });

  it('a reload by the file watch is audited as by:watch, a refused one too', async () => {
    // The test configuration turns the watch off (GRANTOR_POLICY_WATCH=false); the engine's
    // watch uses the appliance's onReload/onReloadError, which is what is under test.
    appliance.policy.watch();
    try {
      await writeFile(join(policyDir, 'freeze.cedar'), FREEZE);
      const watched = await eventually(async () =>
        (await entriesOf('policy.reloaded')).find((e) => e.reasons?.includes('by:watch')),
      );
      expect(watched.subject).toBe(frozenHash);
      expect(watched.reasons).toEqual(['version:4', 'by:watch']);
      expect((await getPolicy()).hash).toBe(frozenHash);

      await writeFile(join(policyDir, 'broken.cedar'), BROKEN);
      const refused = await eventually(async () =>
        (await entriesOf('policy.reload_refused')).find((e) => e.reasons?.[0] === 'by:watch'),
      );
      expect(refused.subject).toBe(frozenHash);
      expect(refused.decision).toBe('policy_set_invalid');
      expect(appliance.policy.info()?.hash).toBe(frozenHash);
    } finally {
      appliance.policy.close();
    }
  });
});
