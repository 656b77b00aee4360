/**
 * `grantor-gateway` following the revocation feed of the real appliance, with its metrics
 * endpoint: the feed lag as a gauge and the refusals for a stale view as a counter, the
 * exposition checked by `promtool check metrics` (Debian `prometheus`). The view is made
 * stale by moving the gateway's clock past the bound: every grant is then refused
 * `revocation_view_stale`, counted, and the upstream executes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promtool } from '../appliance/prometheus.js';
import { startEnforcedGateway, type EnforcedGateway } from './harness.js';

const BOUND = 60;
let rig: EnforcedGateway;

beforeAll(async () => {
  rig = await startEnforcedGateway((up) => ({
    upstream: up.url,
    metricsPath: '/grantor/metrics',
    revocations: { maxStalenessSeconds: BOUND, waitSeconds: 25 },
  }));
}, 180_000);

afterAll(async () => {
  await rig.close();
});

async function scrape(): Promise<string> {
  const res = await fetch(new URL('grantor/metrics', rig.url));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of a series (`name` or `name{labels}`) in an exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const LAG = 'grantor_gateway_revocation_lag_seconds';
const STALE = 'grantor_gateway_revocation_stale_refusals_total';

describe('grantor-gateway metrics: the revocation feed lag and stale refusals', () => {
  it('serves the lag once the snapshot is in, a good grant goes through, promtool accepts it', async () => {
    // +Inf until the signed snapshot arrived (every grant refused until then).
    await expect
      .poll(async () => sample(await scrape(), LAG), { timeout: 20_000 })
      .toBeLessThan(BOUND);
    const { grantId, grant } = await rig.appliance.issue('ticket:1', {
      path: { id: '1' },
      query: {},
    });
    const res = await fetch(new URL('tickets/1', rig.url), {
      headers: await rig.presented(grantId, grant),
    });
    expect(res.status).toBe(200);
    const text = await scrape();
    expect(sample(text, 'grantor_gateway_authorised_total')).toBe(1);
    expect(sample(text, STALE)).toBe(0);
    expect(sample(text, 'grantor_gateway_refusals_total{code="revocation_view_stale"}')).toBe(0);
    await expect(promtool(['check', 'metrics'], { input: text })).resolves.toBe('');
  });

  it('a view older than its bound refuses every grant (revocation_view_stale) and counts it', async () => {
    const executed = rig.upstream.executed.length;
    // A grant that outlives the clock move: only the view's age can refuse it.
    const { grantId, grant } = await rig.appliance.issue(
      'ticket:2',
      { path: { id: '2' }, query: {} },
      { ttlSeconds: 600 },
    );
    // The view was last confirmed when its current long-poll was sent: two bounds ago now.
    rig.clock.offsetMs = 2 * BOUND * 1000;
    try {
      const res = await fetch(new URL('tickets/2', rig.url), {
        headers: await rig.presented(grantId, grant),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('grantor-refusal')).toBe('revocation_view_stale');
      const text = await scrape();
      expect(sample(text, STALE)).toBe(1);
      expect(sample(text, 'grantor_gateway_refusals_total{code="revocation_view_stale"}')).toBe(1);
      expect(sample(text, LAG)).toBeGreaterThan(BOUND);
      await expect(promtool(['check', 'metrics'], { input: text })).resolves.toBe('');
    } finally {
      rig.clock.offsetMs = 0;
    }
    expect(rig.upstream.executed.length).toBe(executed);
    // Never redeemed: the appliance still holds it live.
    expect(await rig.appliance.lineage(grantId)).toMatchObject({ state: 'live' });
  });
});
