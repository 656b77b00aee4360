/**
 * The support team's runtime that the appliance-level suites start from: an ECC AK (in a
 * context file, not persisted) under the runtime TPM's RSA EK, enrolled with the label
 * `team=support` and attested on the appliance `rig` drives.
 */
import type { KeyObject } from 'node:crypto';
import { createEccAk } from '../attestation/tools.js';
import {
  attest,
  enroll,
  grantBody,
  signed,
  type AttestedRuntime,
  type Rig,
} from '../grants/rig.js';

export interface SupportRuntime extends AttestedRuntime {
  /** A POST /v1/grants body: the usual request with `over`, signed (session mode) by `key`. */
  request(over?: Record<string, unknown>, key?: KeyObject): Record<string, unknown>;
}

export async function attestedSupportRuntime(rig: Rig): Promise<SupportRuntime> {
  await createEccAk(rig.tools);
  const ak = { ctx: 'ak.ctx', pub: 'ak.pub' };
  const runtime = await enroll(rig, 'support-agent', { team: 'support' }, ak, 'rsa');
  const session = await attest(rig, runtime);
  return {
    runtime,
    session,
    request: (over = {}, key = session.key.privateKey) =>
      signed(grantBody(runtime, over), session.attestationId, key),
  };
}
