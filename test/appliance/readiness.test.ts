/**
 * The appliance as ./scripts/start runs it, on a real swtpm and a real SoftHSM2 token:
 * provisioning, /readyz over every dependency, a TPM that goes away and comes back, and a
 * wrong HSM PIN (503 naming the HSM, no secret in the answer).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseVerifierKey, verifyNote } from '../../src/audit/checkpoint.js';
import { NoteSignatureError } from '../../src/audit/errors.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { ROLES, type Role } from '../../src/operators/roles.js';
import { checkRouteGuards } from '../operators/route-guard.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { repoRoot } from '../rig/sim.js';

interface ErrorAnswer {
  error: { code: string; message: string; details?: { down?: string[] } };
}

let rig: ApplianceRig;

function config(overrides: Record<string, string> = {}): AppConfig {
  return loadConfig(rig.env(overrides), repoRoot);
}

beforeAll(async () => {
  // A token of this file's own (this process has not initialised the module yet).
  rig = await startApplianceRig('appliance');
  const first = await provisionOnTpm(config());
  expect(first.join('\n')).toMatch(/audit anchor: NV indices .* genesis counter \d+, pinned in/);
  expect(first).toContain('audit log: created');
  const again = await provisionOnTpm(config());
  expect(again).toEqual([
    `audit anchor: pinned in ${config().audit.pinFile} (genesis counter ${/genesis counter (\d+)/.exec(first[0] ?? '')?.[1]})`,
    'audit log: exists',
  ]);
});

afterAll(async () => {
  await rig.destroy();
});

describe('the appliance on real hardware simulators', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startApplianceServer(config());
  });
  afterAll(async () => {
    await server.close();
  });

  it('is ready when the TPM, the HSM, the audit log and the policy answer', async () => {
    expect(server.appliance).toBeDefined();
    const res = await server.app.inject({ url: '/readyz' });
    expect(res.json()).toEqual({
      status: 'ready',
      checks: { tpm: { ok: true }, hsm: { ok: true }, audit: { ok: true }, policy: { ok: true } },
    });
    expect(res.statusCode).toBe(200);
  });

  it('answers 503 naming the TPM while swtpm is down, and recovers when it is back', async () => {
    await rig.tpm.stop();
    try {
      const down = await server.app.inject({ url: '/readyz' });
      expect(down.statusCode).toBe(503);
      const body = down.json<ErrorAnswer>();
      expect(body.error.code).toBe('tpm_unavailable');
      expect(body.error.details?.down).toEqual(['tpm']);
      expect((await server.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await rig.tpm.restart();
    }
    const back = await server.app.inject({ url: '/readyz' });
    expect(back.statusCode).toBe(200);
  });

  it('publishes the grant key in the JWKS and serves the audit checkpoint key', async () => {
    const jwks = await server.app.inject({ url: '/.well-known/jwks.json' });
    expect(jwks.statusCode).toBe(200);
    const keys = jwks.json<{ keys: { kid: string; alg: string; crv: string }[] }>().keys;
    // The active grant key and the next one, published before it signs (issue 18).
    expect(keys.length).toBe(2);
    for (const k of keys) expect(k).toMatchObject({ alg: 'ES256', crv: 'P-256' });
    const verifier = await server.app.inject({ url: '/v1/audit/verifier' });
    expect(verifier.statusCode).toBe(200);
    const verifierKey = verifier.json<{ noteVerifierKey: string }>().noteVerifierKey;
    // A checkpoint with a nonce carries the TPM's NV_Certify of the anchor, by the appliance AK.
    const cp = await server.app.inject({ url: `/v1/audit/checkpoint?nonce=${'a1'.repeat(16)}` });
    expect(cp.statusCode).toBe(200);
    const body = cp.json<{ note: string; nvCertify?: unknown[] }>();
    expect(body.nvCertify?.length).toBe(2);
    // The note verifies against the published verifier key (Ed25519 in the HSM).
    const key = parseVerifierKey(verifierKey);
    expect(verifyNote(body.note, key)).toContain('nv-counter ');
    const tampered = body.note.replace(/nv-counter \d+/, 'nv-counter 999999');
    expect(() => verifyNote(tampered, key)).toThrow(NoteSignatureError);
    expect(verifier.json<{ noteVerifierKey: string }>().noteVerifierKey).toMatch(
      /^grantor\+[0-9a-f]{8}\+/,
    );
  });

  it('guards every operator route by role and every runtime route against operators', async () => {
    const ops = server.appliance?.operators;
    expect(ops).toBeDefined();
    if (ops === undefined) return;
    const tokens = {} as Record<Role, string>;
    for (const role of ROLES) {
      tokens[role] = (await ops.tokens.create({ role, actor: `test-${role}` })).token;
    }
    const report = await checkRouteGuards(server.app, tokens);
    expect(report.failures).toEqual([]);
    expect(report.checked.length).toBeGreaterThan(10);
    // Operator acts are audited with the actor: the log grew while the guards were checked.
    const entries = await server.app.inject({
      url: '/v1/audit/entries?from=0&limit=1000',
      headers: { authorization: `Bearer ${tokens.auditor}` },
    });
    expect(entries.statusCode).toBe(200);
    const types = entries.json<{ entries: { type: string }[] }>().entries.map((e) => e.type);
    expect(types).toContain('operator.act');
  });
});

describe('dual control of key destruction on the real appliance', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startApplianceServer(config());
  });
  afterAll(async () => {
    await server.close();
  });

  it('refuses a destroy with one approval, performs it with two distinct ones, once', async () => {
    const a = server.appliance;
    expect(a).toBeDefined();
    if (a === undefined) return;
    const custodian = async (name: string): Promise<string> =>
      (await a.operators.tokens.create({ role: 'key_custodian', actor: name })).token;
    const [alice, bob, carol] = [
      await custodian('alice'),
      await custodian('bob'),
      await custodian('carol'),
    ];
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    // A retired key to destroy: rotate, then retire the previous one.
    const rotated = await server.app.inject({
      method: 'POST',
      url: '/v1/keys/rotate',
      headers: as(alice),
    });
    expect(rotated.statusCode).toBe(200);
    const kid = rotated.json<{ previous: { kid: string } }>().previous.kid;
    await a.keys.retire(kid, { force: true });
    const destroy = () =>
      server.app.inject({ method: 'POST', url: `/v1/keys/${kid}/destroy`, headers: as(alice) });

    const none = await destroy();
    expect(none.statusCode).toBe(409);
    expect(none.json<ErrorAnswer>().error.code).toBe('approval_required');

    const req = await server.app.inject({
      method: 'POST',
      url: '/v1/approvals',
      headers: as(alice),
      payload: { act: 'key.destroy', params: { kid } },
    });
    expect(req.statusCode).toBe(201);
    const id = req.json<{ id: string }>().id;
    const approve = (token: string) =>
      server.app.inject({ method: 'POST', url: `/v1/approvals/${id}/approve`, headers: as(token) });
    expect((await approve(bob)).statusCode).toBe(200);
    const one = await destroy();
    expect(one.statusCode).toBe(409);
    expect(one.json<ErrorAnswer>().error.code).toBe('approval_required');
    expect(a.keys.get(kid).state).toBe('retired');

    // The requester does not approve its own request; the same approver twice does not
    // make two approvals.
    expect((await approve(alice)).json<ErrorAnswer>().error.code).toBe('approval_own_request');
    expect((await approve(bob)).json<ErrorAnswer>().error.code).toBe('approval_duplicate_actor');
    expect((await approve(carol)).statusCode).toBe(200);
    const done = await destroy();
    expect(done.statusCode).toBe(200);
    expect(done.json<{ key: { kid: string } }>().key.kid).toBe(kid);

    // The key's state is checked before any approval is used: it is destroyed now.
    const again = await destroy();
    expect(again.statusCode).toBe(409);
    expect(again.json<ErrorAnswer>().error.code).toBe('key_state_invalid');
  });
});

describe('a wrong HSM PIN', () => {
  it('leaves a server that answers 503 naming the HSM, without the PIN anywhere', async () => {
    const wrong = 'wrong-pin-31337';
    const server = await startApplianceServer(
      config({ GRANTOR_HSM_PIN_FILE: '', GRANTOR_HSM_PIN: wrong }),
    );
    try {
      expect(server.appliance).toBeUndefined();
      const ready = await server.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      const body = ready.json<ErrorAnswer>();
      expect(body.error.code).toBe('hsm_pin_incorrect');
      expect(body.error.details?.down).toEqual(['hsm']);
      expect(ready.body).not.toContain(wrong);
      const other = await server.app.inject({ url: '/.well-known/jwks.json' });
      expect(other.statusCode).toBe(503);
      expect(other.json<ErrorAnswer>().error.code).toBe('hsm_pin_incorrect');
      expect(other.body).not.toContain(wrong);
    } finally {
      await server.close();
    }
  });
});

describe('a never-provisioned appliance', () => {
  it('answers 503 audit_not_provisioned ("run `grantor provision`"), not a rollback', async () => {
    const server = await startApplianceServer(
      config({ GRANTOR_STATE_DIR: join(rig.dir, 'fresh') }),
    );
    try {
      const ready = await server.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json<ErrorAnswer>().error).toMatchObject({
        code: 'audit_not_provisioned',
        details: { down: ['audit'] },
      });
      const other = await server.app.inject({ url: '/v1/audit/checkpoint' });
      expect(other.statusCode).toBe(503);
      expect(other.json<ErrorAnswer>().error).toEqual({
        code: 'audit_not_provisioned',
        message: 'not provisioned: run `grantor provision`',
      });
    } finally {
      await server.close();
    }
  });
});
