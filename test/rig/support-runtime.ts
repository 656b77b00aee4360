/**
 * The support team's runtime that the appliance-level suites start from: an ECC AK (in a
 * context file, not persisted) under the runtime TPM's RSA EK, enrolled with the label
 * `team=support` and attested on the appliance `rig` drives.
 */
import { createEccAk } from '../attestation/tools.js';
import { attest, enroll, type AttestedRuntime, type Rig } from '../grants/rig.js';

export async function attestedSupportRuntime(rig: Rig): Promise<AttestedRuntime> {
  await createEccAk(rig.tools);
  const ak = { ctx: 'ak.ctx', pub: 'ak.pub' };
  const runtime = await enroll(rig, 'support-agent', { team: 'support' }, ak, 'rsa');
  return { runtime, session: await attest(rig, runtime) };
}
