/**
 * GET /metrics on the real appliance over TLS (startApplianceServer with the certificates
 * scripts/sim/make-tls creates, a real swtpm and SoftHSM2 token): the exposition passes
 * `promtool check metrics`, the labelled counters start at zero, the scrape-time gauges
 * (readiness, build, audit size, grant key age and rotation, certificate expiry, policy
 * reloads) hold the real parts' values, and every metric the shipped alert rules and
 * Grafana dashboard name is exported.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../rig/sim.js';
import {
  alertExpressions,
  dashboardExpressions,
  exportedFamilies,
  isExported,
  metricNamesIn,
  promtool,
} from './prometheus.js';
import { startRealAppliance, type RealAppliance } from './real.js';

const run = promisify(execFile);

let real: RealAppliance;
let tls: string;

beforeAll(async () => {
  tls = await mkdtemp(join(tmpdir(), 'grantor-observe-tls-'));
  await run(join(repoRoot, 'scripts/sim/make-tls'), [tls]);
  real = await startRealAppliance('observe', {
    GRANTOR_TLS_CERT: join(tls, 'server.pem'),
    GRANTOR_TLS_KEY: join(tls, 'server.key'),
    GRANTOR_OPERATOR_CA: join(tls, 'operator-ca.pem'),
    // The feed limits reach the running feed (src/shared/config.ts → createGrants).
    GRANTOR_REVOCATION_FEED_MAX_WAIT_MS: '7000',
  });
}, 180_000);

afterAll(async () => {
  await real.close();
  await rm(tls, { recursive: true, force: true });
});

async function scrape(): Promise<string> {
  const res = await real.server.app.inject({ url: '/metrics' });
  expect(res.statusCode).toBe(200);
  return res.body;
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** notAfter of a PEM certificate file, as openssl reads it (epoch seconds). */
async function opensslNotAfter(file: string): Promise<number> {
  const { stdout } = await run('openssl', ['x509', '-noout', '-enddate', '-in', file]);
  return Date.parse(stdout.trim().replace(/^notAfter=/, '')) / 1000;
}

describe('GET /metrics on the real appliance', () => {
  it('runs the revocation feed with the configured limits; its prune failures start at zero', async () => {
    expect(real.server.appliance?.grants.revocations.maxWaitMs).toBe(7000);
    expect(sample(await scrape(), 'grantor_revocation_feed_prune_failures_total')).toBe(0);
    expect(sample(await scrape(), 'grantor_revocation_feed_subscribers_dropped_total')).toBe(0);
  });

  it('passes promtool check metrics', async () => {
    await expect(promtool(['check', 'metrics'], { input: await scrape() })).resolves.toBe('');
  });

  it('starts the labelled counters at zero for every known label value', async () => {
    const text = await scrape();
    expect(sample(text, 'grantor_grants_issued_total{mode="quote"}')).toBe(0);
    expect(sample(text, 'grantor_grants_denied_total{reason="policy_denied"}')).toBe(0);
    expect(sample(text, 'grantor_grants_denied_total{reason="request_replayed"}')).toBe(0);
    expect(
      sample(text, 'grantor_attestation_verdicts_total{verdict="rejected",reason="nonce_reused"}'),
    ).toBe(0);
    expect(
      sample(
        text,
        'grantor_attestation_verdicts_total{verdict="untrusted",reason="pcr_policy_violation"}',
      ),
    ).toBe(0);
    expect(sample(text, 'grantor_hsm_errors_total{op="sign",code="hsm_unavailable"}')).toBe(0);
    expect(sample(text, 'grantor_hsm_errors_total{op="ready",code="hsm_not_ready"}')).toBe(0);
    expect(
      sample(text, 'grantor_tpm_errors_total{command="NV_Extend",code="tpm_unavailable"}'),
    ).toBe(0);
    expect(sample(text, 'grantor_rate_limited_total{bucket="grants",scope="runtime"}')).toBe(0);
    expect(sample(text, 'grantor_policy_reloads_total{outcome="refused",trigger="watch"}')).toBe(0);
    expect(sample(text, 'grantor_decision_duration_seconds_count{outcome="error"}')).toBe(0);
  });

  it('reports readiness, build, audit size, grant key and certificate expiry', async () => {
    const text = await scrape();
    for (const component of ['tpm', 'hsm', 'audit', 'policy']) {
      expect(sample(text, `grantor_ready{component="${component}"}`)).toBe(1);
    }
    expect(text).toMatch(/^grantor_build_info\{version="0\.1\.0",node="20\.\d+\.\d+"\} 1$/m);
    const size = sample(text, 'grantor_audit_tree_size') ?? -1;
    const checkpoint = await real.server.app.inject({ url: '/v1/audit/checkpoint' });
    expect(size).toBe(checkpoint.json<{ treeSize: number }>().treeSize);
    const age = sample(text, 'grantor_grant_key_age_seconds') ?? -1;
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(3600);
    const keys = real.server.appliance?.keys.list() ?? [];
    const active = keys.find((k) => k.purpose === 'grant' && k.state === 'active');
    const period = real.config().keys.rotationPeriodSeconds;
    const next = sample(text, 'grantor_grant_key_next_rotation_timestamp_seconds');
    if (period > 0) {
      expect(next).toBe(Date.parse(active?.createdAt ?? '') / 1000 + period);
    } else {
      expect(next).toBeUndefined();
    }
    // Cross-checked with openssl.
    expect(
      sample(text, 'grantor_tls_certificate_expiry_timestamp_seconds{certificate="server"}'),
    ).toBe(await opensslNotAfter(join(tls, 'server.pem')));
    expect(
      sample(text, 'grantor_tls_certificate_expiry_timestamp_seconds{certificate="operator_ca"}'),
    ).toBe(await opensslNotAfter(join(tls, 'operator-ca.pem')));
  });

  it('counts an operator policy reload', async () => {
    await real.server.appliance?.reloadPolicy('tok_0000000000000000');
    const text = await scrape();
    expect(sample(text, 'grantor_policy_reloads_total{outcome="applied",trigger="operator"}')).toBe(
      1,
    );
  });

  it('exports every metric the alert rules and the Grafana dashboard name', async () => {
    const families = exportedFamilies(await scrape());
    const named = new Set(
      [...(await alertExpressions()), ...(await dashboardExpressions())].flatMap(metricNamesIn),
    );
    expect(named.size).toBeGreaterThanOrEqual(20);
    const missing = [...named].filter((n) => !isExported(families, n));
    expect(missing).toEqual([]);
  });
});
