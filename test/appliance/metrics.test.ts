/**
 * GET /metrics on the appliance as ./scripts/start composes it (startApplianceServer), on a
 * real swtpm (the appliance's anchor TPM), a second swtpm driven by tpm2-tools (the
 * runtime) and a real SoftHSM2 token. Every series is moved by the real parts: an
 * enrollment and attestation, a granted and a denied grant, an NV-certified checkpoint,
 * and the appliance's TPM going away and coming back. Counts are asserted, never durations.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/http/server.js';
import { DEFAULT_RATE_LIMIT_BUCKETS } from '../../src/shared/config.js';
import { createEccAk } from '../attestation/tools.js';
import {
  attest,
  enroll,
  grantBody,
  signed,
  type Rig,
  type Runtime,
  type SessionKeyPair,
} from '../grants/rig.js';
import type { SimTpm } from '../rig/sim.js';
import { startRealAppliance, type RealAppliance } from './real.js';

let real: RealAppliance;
let applianceTpm: SimTpm;
let server: RunningServer;
/** The runtime helpers of the grants suite drive the app and the runtime's tpm2-tools. */
let rig: Rig;
let runtime: Runtime;
let session: { attestationId: string; key: SessionKeyPair };

beforeAll(async () => {
  real = await startRealAppliance('metrics');
  ({ applianceTpm, server, rig } = real);
  await createEccAk(real.tools);
  runtime = await enroll(
    rig,
    'support-agent',
    { team: 'support' },
    { ctx: 'ak.ctx', pub: 'ak.pub' },
    'rsa',
  );
  session = await attest(rig, runtime);
}, 180_000);

afterAll(async () => {
  await real.close();
});

/** One scrape of GET /metrics. */
async function scrape(): Promise<string> {
  const res = await server.app.inject({ url: '/metrics' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toContain('text/plain');
  return res.body;
}

/** The value of one sample (`name{labels}` exactly as exposed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const tpmCalls = (command: string) =>
  `grantor_tpm_call_duration_seconds_count{command="${command}"}`;

async function requestGrant(over: Record<string, unknown> = {}) {
  return server.app.inject({
    method: 'POST',
    url: '/v1/grants',
    payload: signed(grantBody(runtime, over), session.attestationId, session.key.privateKey),
  });
}

describe('GET /metrics on the real appliance', () => {
  it('counts the attestation verdict', async () => {
    const text = await scrape();
    expect(text).toContain('grantor_attestation_verdicts_total{verdict="trusted",reason="ok"} 1');
  });

  it('counts a granted and a denied request, the HSM signature, the audit batches and NV writes', async () => {
    const before = await scrape();
    const signsBefore = sample(before, 'grantor_hsm_call_duration_seconds_count{op="sign"}') ?? 0;

    const granted = await requestGrant();
    expect(granted.statusCode).toBe(201);
    // audit.delete is forbidden for everyone (policies/default/guardrails.cedar).
    const denied = await requestGrant({ action: 'audit.delete', resource: 'audit:1' });
    expect(denied.statusCode).toBe(403);
    expect(denied.json<{ error: { code: string } }>().error.code).toBe('policy_denied');

    const text = await scrape();
    expect(sample(text, 'grantor_grants_issued_total{mode="session"}')).toBe(1);
    // Started at zero (every known label value), never moved.
    expect(sample(text, 'grantor_grants_issued_total{mode="quote"}')).toBe(0);
    expect(sample(text, 'grantor_grants_denied_total{reason="policy_denied"}')).toBe(1);
    expect(sample(text, 'grantor_decision_duration_seconds_count{outcome="issued"}')).toBe(1);
    expect(sample(text, 'grantor_decision_duration_seconds_count{outcome="denied"}')).toBe(1);
    // The grant was signed in SoftHSM2 (the key service opened and loaded its keys at start).
    expect(sample(text, 'grantor_hsm_call_duration_seconds_count{op="sign"}')).toBe(
      signsBefore + 1,
    );
    expect(sample(text, 'grantor_hsm_call_duration_seconds_count{op="open"}')).toBe(1);
    const hsmErrors = text.split('\n').filter((l) => l.startsWith('grantor_hsm_errors_total{'));
    expect(hsmErrors.length).toBeGreaterThan(0);
    expect(hsmErrors.filter((l) => !l.endsWith(' 0'))).toEqual([]);

    // Each committed batch: one NV_Extend and one NV_Increment of the anchor, both succeeded,
    // sent together in one call of the TPM port once the batch was durable.
    const batches = sample(text, 'grantor_audit_batch_size_count') ?? 0;
    expect(batches).toBeGreaterThanOrEqual(2); // at least the allow and the deny decisions
    expect(sample(text, 'grantor_audit_batch_size_sum')).toBeGreaterThanOrEqual(batches);
    expect(sample(text, 'grantor_nv_writes_total{index="extend"}')).toBe(batches);
    expect(sample(text, 'grantor_nv_writes_total{index="counter"}')).toBe(batches);
    expect(sample(text, tpmCalls('NV_Extend.NV_Increment'))).toBe(batches);
    expect(sample(text, tpmCalls('NV_Extend'))).toBe(0);
    // Start-up read the anchor as the TPM states it (NV_ReadPublic of the pinned names, then
    // NV_Certify of both indices under the pinned AK). After each write the anchor is read
    // back inside the policy-signed increment call itself (issue 21), so no NV_Read is sent.
    expect(sample(text, tpmCalls('NV_ReadPublic'))).toBeGreaterThanOrEqual(2);
    expect(sample(text, tpmCalls('NV_Certify'))).toBeGreaterThanOrEqual(2);
    expect(sample(text, tpmCalls('NV_Read'))).toBe(0);
    expect(sample(text, 'grantor_anchor_lag_entries')).toBe(0);
    expect(sample(text, 'grantor_anchor_lag_seconds')).toBe(0);
    // The grant route's HTTP series, by route pattern.
    expect(
      sample(
        text,
        'grantor_http_request_duration_seconds_count{method="POST",route="/v1/grants",status="201"}',
      ),
    ).toBe(1);
  });

  it('counts the two NV_Certify commands of a checkpoint with a nonce', async () => {
    const before = sample(await scrape(), tpmCalls('NV_Certify')) ?? 0;
    const cp = await server.app.inject({
      url: `/v1/audit/checkpoint?nonce=${'b2'.repeat(16)}`,
    });
    expect(cp.statusCode).toBe(200);
    const text = await scrape();
    expect(sample(text, tpmCalls('NV_Certify'))).toBe(before + 2);
    expect(sample(text, tpmCalls('CreatePrimary'))).toBeGreaterThanOrEqual(1);
    expect(sample(text, tpmCalls('FlushContext'))).toBe(sample(text, tpmCalls('CreatePrimary')));
  });

  it('limits checkpoints with a nonce per address; a refused one costs the TPM nothing', async () => {
    const before = sample(await scrape(), tpmCalls('NV_Certify')) ?? 0;
    const limit = DEFAULT_RATE_LIMIT_BUCKETS.certify.perAddress;
    const started = Date.now();
    let served = 0;
    let refused: Awaited<ReturnType<typeof server.app.inject>> | undefined;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      const nonce = (i + 16).toString(16).repeat(16);
      const r = await server.app.inject({ url: `/v1/audit/checkpoint?nonce=${nonce}` });
      if (r.statusCode === 200) served += 1;
      else refused = r;
    }
    const refill = Math.ceil(((Date.now() - started) / 1000) * limit.perSecond);
    expect(refused?.statusCode).toBe(429);
    expect(refused?.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    expect(refused?.json()).toMatchObject({
      error: { code: 'rate_limited', details: { scope: 'address' } },
    });
    expect(served).toBeLessThanOrEqual(limit.burst + refill);
    const text = await scrape();
    expect(sample(text, tpmCalls('NV_Certify'))).toBe(before + 2 * served);
    expect(sample(text, 'grantor_rate_limited_total{bucket="certify",scope="address"}')).toBe(1);
    // Without a nonce a checkpoint costs the TPM nothing and is not limited.
    expect((await server.app.inject({ url: '/v1/audit/checkpoint' })).statusCode).toBe(200);
  });

  it('counts TPM errors while the TPM is down, the anchor lag it causes, and its recovery', async () => {
    await applianceTpm.stop();
    let during: string;
    try {
      const ready = await server.app.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      // The decision is stored but cannot be anchored: the grant fails closed.
      const failed = await requestGrant();
      expect(failed.statusCode).toBe(503);
      during = await scrape();
    } finally {
      await applianceTpm.restart();
    }
    expect(
      sample(during, 'grantor_tpm_errors_total{command="GetRandom",code="tpm_unavailable"}'),
    ).toBe(1);
    expect(
      sample(
        during,
        'grantor_tpm_errors_total{command="NV_Extend.NV_Increment",code="tpm_unavailable"}',
      ),
    ).toBe(1);
    expect(sample(during, 'grantor_anchor_lag_entries')).toBe(1);
    expect(sample(during, 'grantor_decision_duration_seconds_count{outcome="error"}')).toBe(1);
    // An appliance failure is not a denial.
    expect(during).not.toContain('grantor_grants_denied_total{reason="audit_unavailable"}');
    const writesDuring = sample(during, 'grantor_nv_writes_total{index="counter"}') ?? 0;
    const batchesDuring = sample(during, 'grantor_audit_batch_size_count') ?? 0;

    // The TPM is back: the next decision first anchors the stuck batch, then its own.
    const granted = await requestGrant();
    expect(granted.statusCode).toBe(201);
    const after = await scrape();
    expect(sample(after, 'grantor_anchor_lag_entries')).toBe(0);
    expect(sample(after, 'grantor_anchor_lag_seconds')).toBe(0);
    expect(sample(after, 'grantor_grants_issued_total{mode="session"}')).toBe(2);
    expect(sample(after, 'grantor_nv_writes_total{index="counter"}')).toBe(writesDuring + 2);
    expect(sample(after, 'grantor_audit_batch_size_count')).toBe(batchesDuring + 2);
    expect((await server.app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  it('counts a refused attestation (a made-up quote) as rejected, by its code', async () => {
    const refused = await server.app.inject({
      method: 'POST',
      url: `/v1/runtimes/${runtime.runtimeId}/attestations`,
      payload: {
        nonce: Buffer.alloc(32, 1).toString('base64'),
        quote: Buffer.alloc(8).toString('base64'),
        signature: Buffer.alloc(8).toString('base64'),
        pcrs: { sha256: { '0': '00'.repeat(32) } },
        sessionKey: session.key.jwk,
      },
    });
    expect(refused.statusCode).toBeGreaterThanOrEqual(400);
    expect(refused.statusCode).toBeLessThan(500);
    const code = refused.json<{ error: { code: string } }>().error.code;
    const text = await scrape();
    expect(
      sample(text, `grantor_attestation_verdicts_total{verdict="rejected",reason="${code}"}`),
    ).toBe(1);
  });
});
