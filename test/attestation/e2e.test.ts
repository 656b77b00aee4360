/**
 * End to end on swtpm: enroll -> activate -> challenge -> attest -> trusted, once through the
 * documented tpm2-tools + curl flow (attester/tpm2-tools-flow.sh against the listening
 * server) and once through the routes with tpm2-tools driving the TPM.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../rig/sim.js';
import {
  enrollAndActivate,
  listenHarness,
  quoteWithTools,
  startHarness,
  type Harness,
} from './harness.js';
import { createEccAk } from './tools.js';

const run = promisify(execFile);
let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h.close();
});

describe('attestation end to end on swtpm', () => {
  it('the tpm2-tools + curl flow enrolls, activates and attests as trusted', async () => {
    const env = {
      ...process.env,
      GRANTOR_URL: await listenHarness(h),
      TPM2TOOLS_TCTI: h.tpm.tcti,
    };
    const script = join(repoRoot, 'attester/tpm2-tools-flow.sh');
    const dir = h.tools.path('flow');
    await mkdir(dir, { recursive: true });
    const enrolled = await run(script, ['enroll', 'curl-runtime'], { cwd: dir, env });
    expect(JSON.parse(enrolled.stdout)).toMatchObject({ state: 'active' });
    const attested = await run(script, ['attest'], { cwd: dir, env });
    const verdict = JSON.parse(attested.stdout) as {
      verdict: string;
      attestationId: string;
      reasons: string[];
    };
    expect(verdict.verdict).toBe('trusted');
    expect(verdict.reasons).toEqual([]);
    expect(h.svc.sessionFor(verdict.attestationId)).toBeDefined();
    expect(h.audit.events.map((e) => e.type)).toEqual([
      'runtime.enroll',
      'runtime.activate',
      'runtime.attest',
    ]);
  });

  it('through the routes: a second runtime AK on the same TPM cannot reuse the EK', async () => {
    await createEccAk(h.tools);
    await expect(enrollAndActivate(h, 'second')).rejects.toThrow(/ek_already_enrolled/);
  });

  it('an attested session is visible to GET and ended by revocation', async () => {
    const runtimeId = (await h.tools.read('flow/runtime-id')).toString().trim();
    const res = await h.app.inject({
      method: 'GET',
      url: `/v1/runtimes/${runtimeId}`,
      headers: h.operator,
    });
    expect(res.statusCode).toBe(200);
    const view = res.json<{
      state: string;
      lastAttestation: { attestationId: string; verdict: string };
    }>();
    expect(view).toMatchObject({
      state: 'active',
      referencePolicy: 'swtpm-test',
      ekCertified: true,
    });
    expect(h.svc.sessionFor(view.lastAttestation.attestationId)).toBeDefined();
    const revoked = await h.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${runtimeId}/revoke`,
      headers: h.operator,
    });
    expect(revoked.json()).toEqual({ runtimeId, state: 'revoked' });
    expect(h.svc.sessionFor(view.lastAttestation.attestationId)).toBeUndefined();
    const again = await quoteWithTools(h, runtimeId).catch((e: unknown) => String(e));
    expect(again).toMatch(/challenge: 409/);
  });
});
