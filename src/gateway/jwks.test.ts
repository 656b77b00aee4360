import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { JwksClient, maxAgeSeconds, parseJwks, staticKeySource } from './jwks.js';

const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const point = publicKey.export({ format: 'jwk' });
const key = {
  kty: 'EC',
  crv: 'P-256',
  x: point.x,
  y: point.y,
  kid: 'k1',
  alg: 'ES256',
  use: 'sig',
};

function fakeFetch(answers: (() => Response)[]): { fetch: typeof fetch; calls: () => number } {
  let calls = 0;
  const fn = (() => {
    const answer = answers[Math.min(calls, answers.length - 1)];
    calls++;
    if (answer === undefined) return Promise.reject(new Error('no answer'));
    return Promise.resolve(answer());
  }) as typeof fetch;
  return { fetch: fn, calls: () => calls };
}

const ok = (body: unknown, cacheControl?: string) => () =>
  new Response(JSON.stringify(body), {
    status: 200,
    headers: cacheControl === undefined ? {} : { 'cache-control': cacheControl },
  });

describe('maxAgeSeconds', () => {
  it.each([
    [null, undefined],
    ['max-age=60', 60],
    ['public, max-age=120, must-revalidate', 120],
    ['MAX-AGE=5', 5],
    ['no-store', 0],
    ['max-age=60, no-cache', 0],
    ['max-age=abc', undefined],
    ['max-age=-1', undefined],
  ])('%j -> %j', (header, expected) => {
    expect(maxAgeSeconds(header)).toBe(expected);
  });
});

describe('JwksClient', () => {
  it('caches for max-age, then refetches', async () => {
    let now = 0;
    const f = fakeFetch([ok({ keys: [key] }, 'max-age=100')]);
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: f.fetch,
      now: () => now,
    });
    await client.getKey('k1');
    now = 99_000;
    await client.getKey('k1');
    expect(f.calls()).toBe(1);
    now = 100_000;
    await client.getKey('k1');
    expect(f.calls()).toBe(2);
  });

  it('never caches for less than the refresh interval (no-store)', async () => {
    let now = 0;
    const f = fakeFetch([ok({ keys: [key] }, 'no-store')]);
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: f.fetch,
      now: () => now,
    });
    await client.getKey('k1');
    now = 29_000;
    await client.getKey('k1');
    expect(f.calls()).toBe(1);
    now = 30_000;
    await client.getKey('k1');
    expect(f.calls()).toBe(2);
  });

  it('caps max-age', async () => {
    let now = 0;
    const f = fakeFetch([ok({ keys: [key] }, 'max-age=999999999')]);
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: f.fetch,
      now: () => now,
      maxMaxAgeSeconds: 600,
    });
    await client.getKey('k1');
    now = 600_000;
    await client.getKey('k1');
    expect(f.calls()).toBe(2);
  });

  it('after a failed fetch, waits the interval before trying again', async () => {
    let now = 0;
    const f = fakeFetch([() => new Response('', { status: 503 }), ok({ keys: [key] })]);
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: f.fetch,
      now: () => now,
    });
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
    expect(f.calls()).toBe(1);
    now = 30_000;
    await expect(client.getKey('k1')).resolves.toMatchObject({ kid: 'k1' });
  });

  it('does not trust an expired cache when the refetch fails', async () => {
    let now = 0;
    const f = fakeFetch([
      ok({ keys: [key] }, 'max-age=60'),
      () => new Response('', { status: 500 }),
    ]);
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: f.fetch,
      now: () => now,
    });
    await client.getKey('k1');
    now = 61_000;
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
    expect(f.calls()).toBe(2);
  });

  it('coalesces concurrent fetches', async () => {
    const f = fakeFetch([ok({ keys: [key] })]);
    const client = new JwksClient({ url: 'https://grantor.example/jwks', fetch: f.fetch });
    await Promise.all([client.getKey('k1'), client.getKey('k1'), client.getKey('k1')]);
    expect(f.calls()).toBe(1);
    expect(client.fetchCount).toBe(1);
  });

  it('is jwks_unavailable when fetch itself throws', async () => {
    const client = new JwksClient({
      url: 'https://grantor.example/jwks',
      fetch: () => Promise.reject(new TypeError('fetch failed')),
    });
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
  });

  it.each([
    ['not JSON', () => new Response('{', { status: 200 })],
    ['without a keys array', ok({ keys: 'none' })],
    ['repeating a kid', ok({ keys: [key, key] })],
    ['repeating a member', () => new Response('{"keys":[],"keys":[]}', { status: 200 })],
    ['too large', () => new Response('x'.repeat(300 * 1024), { status: 200 })],
    ['a redirect', () => new Response('', { status: 302, headers: { location: 'https://x/' } })],
  ])('refuses a JWKS answer %s', async (_name, answer) => {
    const f = fakeFetch([answer]);
    const client = new JwksClient({ url: 'https://grantor.example/jwks', fetch: f.fetch });
    await expect(client.getKey('k1')).rejects.toMatchObject({ code: 'jwks_unavailable' });
  });

  it('refuses plain http except to loopback, and bad intervals', () => {
    expect(() => new JwksClient({ url: 'http://grantor.example/jwks' })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
    expect(() => new JwksClient({ url: 'not a url' })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
    expect(
      () => new JwksClient({ url: 'https://grantor.example/jwks', minRefreshIntervalSeconds: -1 }),
    ).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(() => new JwksClient({ url: 'http://127.0.0.1:1/jwks' })).not.toThrow();
  });
});

describe('parseJwks', () => {
  it('marks keys that are not ES256 public keys unusable', async () => {
    const entries = await parseJwks(
      JSON.stringify({
        keys: [
          key,
          { ...key, kid: 'priv', d: 'AAAA' },
          { ...key, kid: 'rs', alg: 'RS256' },
          { ...key, kid: 'off-curve', x: key.y },
          { kty: 'oct', kid: 'hmac', k: 'c2VjcmV0', alg: 'HS256' },
        ],
      }),
    );
    expect(entries.get('k1')?.usable).toBe(true);
    for (const kid of ['priv', 'rs', 'off-curve', 'hmac'])
      expect(entries.get(kid)?.usable).toBe(false);
  });

  it('a static key source answers the same codes', async () => {
    const keys = await staticKeySource(
      JSON.stringify({ keys: [key, { ...key, kid: 'rs', alg: 'RS256' }] }),
    );
    await expect(keys.getKey('k1')).resolves.toMatchObject({ kid: 'k1' });
    await expect(keys.getKey('nope')).rejects.toMatchObject({ code: 'grant_kid_unknown' });
    await expect(keys.getKey('rs')).rejects.toMatchObject({ code: 'grant_alg_invalid' });
  });
});
