/**
 * A support runtime on a real appliance's runtime TPM (`real.tools`): an ECC AK made
 * persistent at 0x81010003, enrolled with the appliance and attested. The tests that keep
 * the grant key in that TPM too use it, and so does the policy reload test.
 */
import { staticKeySource, verifyGrant, type VerifiedGrant } from '../../src/gateway/index.js';
import { createEccAk } from '../attestation/tools.js';
import type { RealAppliance } from '../appliance/real.js';
import { attest, enroll, sessionRequest, TICKET_READ, type Runtime } from './rig.js';

export interface TpmRuntime {
  readonly rt: Runtime;
  readonly session: Awaited<ReturnType<typeof attest>>;
}

export async function attestTpmRuntime(real: RealAppliance, name: string): Promise<TpmRuntime> {
  await createEccAk(real.tools);
  await real.tools.tpm2('evictcontrol', ['-C', 'o', '-c', 'ak.ctx', '0x81010003']);
  const rt = await enroll(
    real.rig,
    name,
    { team: 'support' },
    { ctx: '0x81010003', pub: 'ak.pub' },
    'rsa',
  );
  return { rt, session: await attest(real.rig, rt) };
}

/** POST /v1/grants with the runtime's usual request, signed by its session key. */
export async function postGrant(
  real: RealAppliance,
  { rt, session }: TpmRuntime,
): Promise<{ status: number; body: string }> {
  const res = await real.server.app.inject({
    method: 'POST',
    url: '/v1/grants',
    payload: sessionRequest({ runtime: rt, session }),
  });
  return { status: res.statusCode, body: res.body };
}

/**
 * Verify `grants` offline, as the gateway that executes the usual request would, with the keys
 * the appliance's JWKS holds now.
 */
export async function verifyOffline(
  real: RealAppliance,
  grants: readonly string[],
): Promise<VerifiedGrant[]> {
  const keys = await staticKeySource(
    (await real.server.app.inject({ url: '/.well-known/jwks.json' })).body,
  );
  const verified: VerifiedGrant[] = [];
  for (const grant of grants) {
    verified.push(
      await verifyGrant(grant, {
        issuer: real.config().applianceId,
        audience: 'gw_tickets',
        keys,
        execution: TICKET_READ,
      }),
    );
  }
  return verified;
}
