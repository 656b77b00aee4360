import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../shared/metrics.js';
import { createServer, type App } from '../app.js';
import { RateLimiter, rateLimit, type RateLimits } from './rate-limit.js';

let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const limits: RateLimits = {
  challenges: { perAddress: { burst: 1000, perSecond: 1 }, perRuntime: { burst: 3, perSecond: 1 } },
  enroll: { perAddress: { burst: 2, perSecond: 1 }, perRuntime: { burst: 2, perSecond: 1 } },
  grants: { perAddress: { burst: 1000, perSecond: 1 }, perRuntime: { burst: 2, perSecond: 1 } },
  certify: {
    perAddress: { burst: 3, perSecond: 1 },
    perRuntime: { burst: 1, perSecond: 1 },
    perAppliance: { burst: 4, perSecond: 1 },
  },
};

async function setup(maxEntries = 100) {
  let now = 0;
  const limiter = new RateLimiter(maxEntries, () => now);
  const metrics = createMetrics({ defaultMetrics: false });
  const a = createServer();
  await a.register(rateLimit, { limits, limiter, metrics, clock: () => now });
  a.post(
    '/v1/runtimes/:runtimeId/challenges',
    { config: { rateLimit: { bucket: 'challenges' } } },
    () => ({
      ok: true,
    }),
  );
  a.post(
    '/v1/runtimes',
    { config: { rateLimit: { bucket: 'enroll', perRuntime: false } } },
    () => ({
      ok: true,
    }),
  );
  a.post('/v1/grants', { config: { rateLimit: { bucket: 'grants', perAddress: false } } }, () => ({
    ok: true,
  }));
  a.get(
    '/costly',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: { nonce: { type: 'string', pattern: '^[0-9a-f]{2}$' } },
        },
      },
      config: {
        rateLimit: {
          bucket: 'certify',
          perRuntime: false,
          when: (r) => Object.hasOwn(r.query as object, 'nonce'),
        },
      },
    },
    () => ({ ok: true }),
  );
  a.get('/open', () => ({ ok: true }));
  await a.ready();
  app = a;
  return {
    app: a,
    limiter,
    metrics,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('rate limits', () => {
  it('answers a flood from one runtime with 429 and Retry-After; other runtimes are unaffected', async () => {
    const s = await setup();
    const challenge = (rt: string) =>
      s.app.inject({ method: 'POST', url: `/v1/runtimes/${rt}/challenges` });
    for (let i = 0; i < 3; i++) expect((await challenge('rt_a')).statusCode).toBe(200);
    const limited = await challenge('rt_a');
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json()).toMatchObject({
      error: { code: 'rate_limited', details: { retryAfterSeconds: 1, scope: 'runtime' } },
    });
    expect((await challenge('rt_b')).statusCode).toBe(200);
    s.advance(1000);
    expect((await challenge('rt_a')).statusCode).toBe(200);
    expect(
      await s.metrics.registry.getSingleMetricAsString('grantor_rate_limited_total'),
    ).toContain('bucket="challenges",scope="runtime"} 1');
  });

  it('limits per client address before reading the body', async () => {
    const s = await setup();
    const enroll = (headers: Record<string, string> = {}) =>
      s.app.inject({
        method: 'POST',
        url: '/v1/runtimes',
        headers: { 'content-type': 'application/json', ...headers },
        payload: '{"broken',
      });
    // The first two are parsed (and refused as malformed), the third is never read.
    expect((await enroll()).statusCode).toBe(400);
    expect((await enroll()).statusCode).toBe(400);
    const limited = await enroll();
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({
      error: { code: 'rate_limited', details: { scope: 'address' } },
    });
    // Another address is unaffected.
    const other = await s.app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      remoteAddress: '10.0.0.9',
      payload: { name: 'x' },
    });
    expect(other.statusCode).toBe(200);
  });

  it('limits IPv6 clients per /64, not per address', async () => {
    const s = await setup();
    const enroll = (remoteAddress: string) =>
      s.app.inject({ method: 'POST', url: '/v1/runtimes', remoteAddress, payload: { name: 'x' } });
    expect((await enroll('2001:db8:1:2::1')).statusCode).toBe(200);
    expect((await enroll('2001:db8:1:2::2')).statusCode).toBe(200);
    // A third address of the same /64 shares the budget.
    const limited = await enroll('2001:db8:1:2:ffff::3');
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({ error: { details: { scope: 'address' } } });
    expect((await enroll('2001:db8:1:3::1')).statusCode).toBe(200);
  });

  it('keys grants by the runtime id in the body', async () => {
    const s = await setup();
    const grant = (runtimeId: unknown) =>
      s.app.inject({ method: 'POST', url: '/v1/grants', payload: { runtimeId } });
    expect((await grant('rt_a')).statusCode).toBe(200);
    expect((await grant('rt_a')).statusCode).toBe(200);
    expect((await grant('rt_a')).statusCode).toBe(429);
    expect((await grant('rt_b')).statusCode).toBe(200);
    // No usable runtime id: nothing to key on (validation refuses such bodies).
    expect((await grant(42)).statusCode).toBe(200);
  });

  it('a client elsewhere cannot spend a runtime budget it claims (the key holds the address)', async () => {
    const s = await setup();
    const from = (remoteAddress: string) =>
      s.app.inject({
        method: 'POST',
        url: '/v1/runtimes/rt_victim/challenges',
        remoteAddress,
      });
    // The attacker exhausts "rt_victim" from its own address...
    for (let i = 0; i < 3; i++) expect((await from('10.6.6.6')).statusCode).toBe(200);
    const refused = await from('10.6.6.6');
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({
      error: { code: 'rate_limited', details: { scope: 'runtime' } },
    });
    // ...and the runtime itself, at its address, still has its whole budget.
    for (let i = 0; i < 3; i++) expect((await from('10.0.0.7')).statusCode).toBe(200);
    expect((await from('10.0.0.7')).statusCode).toBe(429);
  });

  it('an appliance-wide bucket caps all addresses together; `when` exempts the cheap requests', async () => {
    const s = await setup();
    const costly = (remoteAddress: string, query = '?nonce=aa') =>
      s.app.inject({ url: `/costly${query}`, remoteAddress });
    const scope = async (remoteAddress: string) =>
      (await costly(remoteAddress)).json<{ error?: { details: { scope: string } } }>().error
        ?.details.scope;
    for (let i = 0; i < 3; i++) expect((await costly('10.1.0.1')).statusCode).toBe(200);
    expect(await scope('10.1.0.1')).toBe('address');
    expect((await costly('10.1.0.2')).statusCode).toBe(200);
    // Four taken from the appliance's bucket: the next address is refused for the appliance.
    expect(await scope('10.1.0.3')).toBe('appliance');
    // A request the route does not count is never refused.
    for (let i = 0; i < 10; i++) expect((await costly('10.1.0.1', '')).statusCode).toBe(200);
    s.advance(1000);
    // One token back. A request refused by validation does not spend it...
    expect((await costly('10.1.0.4', '?nonce=zz')).statusCode).toBe(400);
    expect((await costly('10.1.0.4')).statusCode).toBe(200);
    expect(await scope('10.1.0.5')).toBe('appliance');
    const counted = await s.metrics.registry.getSingleMetricAsString('grantor_rate_limited_total');
    expect(counted).toContain('bucket="certify",scope="address"} 1');
    expect(counted).toContain('bucket="certify",scope="appliance"} 2');
  });

  it('a flood of other keys cannot evict (and so refill) the appliance-wide bucket', async () => {
    const s = await setup(20);
    for (let i = 0; i < 4; i++) {
      expect(
        (await s.app.inject({ url: '/costly?nonce=aa', remoteAddress: `10.2.0.${i}` })).statusCode,
      ).toBe(200);
    }
    for (let i = 0; i < 100; i++) {
      await s.app.inject({ method: 'POST', url: `/v1/runtimes/rt_${i}/challenges` });
    }
    expect(s.limiter.size).toBeLessThanOrEqual(20);
    const after = await s.app.inject({ url: '/costly?nonce=aa', remoteAddress: '10.2.0.9' });
    expect(after.statusCode).toBe(429);
    expect(after.json()).toMatchObject({ error: { details: { scope: 'appliance' } } });
  });

  it('keeps memory bounded under a flood of distinct runtimes', async () => {
    const s = await setup(50);
    for (let i = 0; i < 500; i++) {
      await s.app.inject({ method: 'POST', url: `/v1/runtimes/rt_${i}/challenges` });
    }
    expect(s.limiter.size).toBeLessThanOrEqual(50);
    expect((await s.app.inject({ url: '/open' })).statusCode).toBe(200);
  });

  it('refuses an unknown bucket at start-up', async () => {
    const a = createServer();
    await a.register(rateLimit, {});
    expect(() =>
      a.get('/x', { config: { rateLimit: { bucket: 'nope' as 'grants' } } }, () => ({})),
    ).toThrow(/unknown rate limit bucket/);
    await a.close();
  });
});

describe('RateLimiter', () => {
  it('refills at the configured rate up to the burst', () => {
    let now = 0;
    const l = new RateLimiter(10, () => now);
    const limit = { burst: 2, perSecond: 0.5 };
    expect(l.take('k', limit).ok).toBe(true);
    expect(l.take('k', limit).ok).toBe(true);
    expect(l.take('k', limit)).toEqual({ ok: false, retryAfterSeconds: 2 });
    now += 2000;
    expect(l.take('k', limit).ok).toBe(true);
    now += 3_600_000;
    expect(l.take('k', limit).ok).toBe(true);
    expect(l.take('k', limit).ok).toBe(true);
    expect(l.take('k', limit).ok).toBe(false);
  });

  it('evicts the least recently used key', () => {
    const l = new RateLimiter(2, () => 0);
    const limit = { burst: 1, perSecond: 0 };
    l.take('a', limit);
    l.take('b', limit);
    l.take('a', limit);
    l.take('c', limit);
    expect(l.size).toBe(2);
    // `b` was evicted and starts full again; `a` is still limited.
    expect(l.take('b', limit).ok).toBe(true);
    expect(l.take('c', limit).ok).toBe(false);
    expect(() => new RateLimiter(0)).toThrow(TypeError);
  });
});
