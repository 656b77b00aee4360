/**
 * The production appliance (startApplianceServer) with its grant key in its own TPM: one
 * swtpm behind tpm2-abrmd, shared by the addon (the audit anchor, NV_Certify, readiness) and
 * tpm2-pkcs11 (the ES256 grant key), as both would share /dev/tpmrm0; the audit checkpoint
 * key in SoftHSM2. Under load (16 grant requests in flight, certified checkpoints asked at
 * the same time) every grant verifies with the gateway SDK against the JWKS and every
 * checkpoint carries the TPM's certification; with the TPM away nothing is issued (503).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pkcs11Signer } from '../../src/keys/signer.pkcs11.js';
import { startRealAppliance, type RealAppliance } from '../appliance/real.js';
import { attestTpmRuntime, postGrant, verifyOffline, type TpmRuntime } from './tpm-runtime.js';

let real: RealAppliance;
let runtime: TpmRuntime;

beforeAll(async () => {
  real = await startRealAppliance('tpm-keys', {}, { grantKeys: 'tpm' });
  runtime = await attestTpmRuntime(real, 'tpm-agent');
});

afterAll(async () => {
  await real.close();
});

async function requestGrant(): Promise<{ status: number; body: Record<string, unknown> }> {
  const { status, body } = await postGrant(real, runtime);
  return { status, body: JSON.parse(body) as Record<string, unknown> };
}

describe('grant keys in the appliance TPM, shared with the audit anchor', () => {
  it('holds the active grant key in the TPM token and the audit key elsewhere', async () => {
    const appliance = real.server.appliance;
    if (appliance === undefined || real.tpmToken === undefined) throw new Error('no appliance');
    const grant = appliance.keys.list().find((r) => r.purpose === 'grant' && r.state === 'active');
    const audit = appliance.keys.list().find((r) => r.purpose === 'audit' && r.state === 'active');
    if (grant === undefined || audit === undefined) throw new Error('keys missing');
    const onTpm = new Pkcs11Signer({
      modulePath: real.tpmToken.module,
      tokenLabel: real.tpmToken.tokenLabel,
      pin: real.tpmToken.pin,
      sessionPoolSize: 1,
      signDeadlineMs: 10_000,
      recoveryBackoffMs: 0,
    });
    await onTpm.open();
    try {
      await expect(onTpm.load(grant.hsmId, 'ES256')).resolves.toMatchObject({
        publicJwk: grant.publicJwk,
      });
      await expect(onTpm.load(audit.hsmId, 'EdDSA')).rejects.toMatchObject({
        code: 'hsm_key_missing',
      });
    } finally {
      await onTpm.close();
    }
    const ready = await real.server.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
  });

  it('anchors and signs on one TPM at the same time under load', async () => {
    const total = 96;
    let next = 0;
    const grants: string[] = [];
    const failures: string[] = [];
    const clients = Array.from({ length: 16 }, async () => {
      while (next < total) {
        next += 1;
        const { status, body } = await requestGrant();
        if (status === 201) grants.push(String(body.grant));
        else failures.push(`${status} ${JSON.stringify(body)}`);
      }
    });
    // Certified checkpoints at the same time: NV_Certify by the appliance AK through the addon.
    const checkpoints = (async () => {
      const notes: number[] = [];
      for (let i = 0; i < 6; i++) {
        const cp = await real.server.app.inject({
          url: `/v1/audit/checkpoint?nonce=${i.toString(16).padStart(2, '0').repeat(16)}`,
        });
        expect(cp.statusCode).toBe(200);
        notes.push(cp.json<{ nvCertify?: unknown[] }>().nvCertify?.length ?? 0);
      }
      return notes;
    })();
    await Promise.all(clients);
    expect(failures).toEqual([]);
    expect(grants.length).toBe(total);
    expect(await checkpoints).toEqual([2, 2, 2, 2, 2, 2]);

    for (const v of await verifyOffline(real, grants)) {
      expect(v.runtimeId).toBe(runtime.rt.runtimeId);
    }
    expect((await real.server.app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  it('issues nothing while the TPM is away (503), and issues again when it is back', async () => {
    await real.applianceTpm.stop();
    try {
      const { status, body } = await requestGrant();
      expect(status).toBe(503);
      // The audit append (anchored in the same TPM) runs before the signature: it fails first.
      expect((body.error as { code?: string }).code).toBe('audit_unavailable');
      expect(JSON.stringify(body)).not.toContain('eyJ');
      const ready = await real.server.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
    } finally {
      await real.applianceTpm.restart();
    }
    let status = 0;
    for (let i = 0; i < 50 && status !== 201; i++) {
      ({ status } = await requestGrant());
      if (status !== 201) await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(201);
  });
});
