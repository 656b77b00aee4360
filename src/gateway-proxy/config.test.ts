import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from './config.js';

const good = {
  upstream: 'http://127.0.0.1:9000',
  appliance: { url: 'http://127.0.0.1:8443', issuer: 'grantor-1', audience: 'gw_tickets' },
  routes: [
    {
      method: 'GET',
      path: '/t/:id',
      action: 'tickets.read',
      resource: 'ticket:{id}',
      parameters: 'path',
    },
  ],
};

function keyOf(value: unknown): unknown {
  try {
    parseGatewayConfig(value);
    return undefined;
  } catch (err) {
    return (err as { code?: string; details?: { key?: string } }).code === 'config_invalid'
      ? (err as { details: { key: string } }).details.key
      : err;
  }
}

describe('parseGatewayConfig', () => {
  it('fills the defaults: proof of possession on, limits, paths', () => {
    const c = parseGatewayConfig(good);
    expect(c.presentation).toEqual({
      grantHeader: 'authorization',
      grantScheme: 'Grant',
      popHeader: 'grant-pop',
      requirePop: true,
    });
    expect(c.limits).toEqual({
      maxHeaderBytes: 16_384,
      maxBodyBytes: 1_048_576,
      clientTimeoutMs: 30_000,
      upstreamTimeoutMs: 30_000,
    });
    expect(c.popChallengePath).toBe('/grantor/pop/challenge');
    expect(c.authRequestPath).toBeUndefined();
    expect(c.metricsPath).toBeUndefined();
    expect(c.revocations).toBeUndefined();
    expect(parseGatewayConfig({ ...good, revocations: {} }).revocations).toEqual({
      maxStalenessSeconds: 60,
      waitSeconds: 25,
    });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 9080 });
  });

  it.each([
    [null, 'config'],
    [{ ...good, extra: 1 }, 'extra'],
    [{ ...good, upstream: 'ftp://x' }, 'upstream'],
    [{ ...good, upstream: 'http://u:p@x' }, 'upstream'],
    [{ ...good, upstream: undefined }, 'upstream'],
    [{ ...good, appliance: { ...good.appliance, issuer: '' } }, 'appliance.issuer'],
    [
      { ...good, appliance: { ...good.appliance, gatewayToken: 'ggw_x' } },
      'appliance.gatewayToken',
    ],
    [{ ...good, limits: { maxBodyBytes: -1 } }, 'limits.maxBodyBytes'],
    [{ ...good, limits: { clientTimeoutMs: 1.5 } }, 'limits.clientTimeoutMs'],
    [{ ...good, presentation: { requirePop: 'yes' } }, 'presentation.requirePop'],
    [{ ...good, presentation: { popHeader: 'Authorization' } }, 'presentation.popHeader'],
    [{ ...good, presentation: { grantHeader: 'bad header' } }, 'presentation.grantHeader'],
    [{ ...good, authRequestPath: 'auth' }, 'authRequestPath'],
    [{ ...good, authRequestPath: '/grantor/pop/challenge' }, 'authRequestPath'],
    [{ ...good, routes: [] }, 'routes'],
    [{ ...good, metricsPath: 'metrics' }, 'metricsPath'],
    [{ ...good, metricsPath: '/grantor/pop/challenge' }, 'metricsPath'],
    [{ ...good, revocations: true }, 'revocations'],
    [{ ...good, revocations: { lag: 1 } }, 'revocations.lag'],
    [{ ...good, revocations: { waitSeconds: 61 } }, 'revocations.waitSeconds'],
    [{ ...good, revocations: { maxStalenessSeconds: 0 } }, 'revocations.maxStalenessSeconds'],
    [
      { ...good, revocations: { maxStalenessSeconds: 20, waitSeconds: 20 } },
      'revocations.maxStalenessSeconds',
    ],
    [{ ...good, routes: [{ ...good.routes[0], resource: 'x:{nope}' }] }, 'routes[0].resource'],
  ])('%j → %s', (value, key) => {
    expect(keyOf(value)).toBe(key);
  });

  it('needs no upstream for auth_request only', () => {
    expect(
      parseGatewayConfig({ ...good, upstream: undefined, authRequestPath: '/auth' }).upstream,
    ).toBeUndefined();
  });
});
