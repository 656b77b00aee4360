/**
 * Floods against the real runtime routes as buildApp wires them (the real attestation
 * service with software TPMs, the real operator plane, the default rate limits from
 * src/shared/config.ts): one runtime flooding challenges is refused with 429 and
 * Retry-After while another runtime is still served, one address flooding enrollment is
 * refused, oversized bodies are refused per route, and the rate-limit state stays bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MeasuredBoot } from '../../src/attestation/measured-boot/measured-boot.js';
import { SoftEk, SoftTpm } from '../../src/attestation/testing/soft-tpm.js';
import type { GrantService } from '../../src/grants/index.js';
import { buildApp, type App } from '../../src/http/app.js';
import { RateLimiter } from '../../src/http/plugins/rate-limit.js';
import { createMemoryOperators } from '../../src/operators/index.js';
import { createFakeOperatorTokens } from '../../src/operators/token-store.memory.js';
import { DEFAULT_RATE_LIMIT_BUCKETS } from '../../src/shared/config.js';
import { GrantorError } from '../../src/shared/errors.js';
import { objectName } from '../../src/tpm/marshal/public.js';
import { softAttestationService } from '../attestation/harness.js';

interface ErrorAnswer {
  error: { code: string; details?: { scope?: string; retryAfterSeconds?: number } };
}

const tpm = new SoftTpm('ecc');
const limiter = new RateLimiter(200);
let app: App;
let operator: string;
let gatewayToken: string;

/** Enroll a software runtime with a bare EK, activate it and approve it: an active runtime. */
async function activeRuntime(name: string): Promise<string> {
  const ek = new SoftEk();
  const ak = new SoftTpm('ecc');
  const enrolled = await app.inject({
    method: 'POST',
    url: '/v1/runtimes',
    payload: {
      name,
      ekPublic: ek.ekPublicBytes.toString('base64'),
      akPublic: ak.akPublicBytes.toString('base64'),
    },
  });
  expect(enrolled.statusCode).toBe(201);
  const e = enrolled.json<{ runtimeId: string; credentialBlob: string; encryptedSecret: string }>();
  const secret = ek.activate(
    Buffer.from(e.credentialBlob, 'base64'),
    Buffer.from(e.encryptedSecret, 'base64'),
    objectName(ak.akPublic),
  );
  const act = await app.inject({
    method: 'POST',
    url: `/v1/runtimes/${e.runtimeId}/activation`,
    payload: { secret: secret.toString('base64') },
  });
  expect(act.statusCode).toBe(200);
  const approved = await app.inject({
    method: 'POST',
    url: `/v1/runtimes/${e.runtimeId}/approve`,
    headers: { authorization: `Bearer ${operator}` },
  });
  expect(approved.statusCode).toBe(200);
  return e.runtimeId;
}

beforeAll(async () => {
  const tokens = createFakeOperatorTokens();
  operator = (await tokens.create({ role: 'operator', actor: 'ops' })).token;
  const attestation = softAttestationService(tpm, 'abuse');
  // Grant requests are refused by the service; what is tested here is the limit before it.
  const grants = {
    request: () => Promise.reject(new GrantorError('runtime_not_active', 'not active')),
  } as unknown as GrantService;
  const operators = { ...createMemoryOperators(), tokens };
  gatewayToken = (await operators.gateways.enroll({ name: 'abuse', audiences: ['gw'] }, 'cli'))
    .token;
  app = await buildApp({
    probes: [],
    operators,
    attestation,
    grants,
    rateLimiter: limiter,
    // The grant limits are generous by default (benches); a tight one shows the mechanism.
    rateLimits: {
      grants: {
        perAddress: DEFAULT_RATE_LIMIT_BUCKETS.grants.perAddress,
        perRuntime: { burst: 5, perSecond: 0.001 },
      },
    },
  });
});

afterAll(async () => {
  await app.close();
});

describe('rate limits on the real runtime routes', () => {
  it('answers a challenge flood from one runtime with 429 + Retry-After; another runtime is still served', async () => {
    const flood = await activeRuntime('flooder');
    const honest = await activeRuntime('honest');
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<App['inject']>> | undefined;
    const perRuntime = DEFAULT_RATE_LIMIT_BUCKETS.challenges.perRuntime.burst;
    for (let i = 0; i < perRuntime * 4; i++) {
      const res = await app.inject({ method: 'POST', url: `/v1/runtimes/${flood}/challenges` });
      statuses.push(res.statusCode);
      if (res.statusCode === 429) limited ??= res;
    }
    expect(statuses[0]).toBe(201);
    expect(statuses.filter((s) => s !== 201 && s !== 429)).toEqual([]);
    expect(limited).toBeDefined();
    const body = limited?.json<ErrorAnswer>();
    expect(body?.error.code).toBe('rate_limited');
    expect(body?.error.details?.scope).toBe('runtime');
    expect(Number(limited?.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // The other runtime, same address, is not affected.
    const other = await app.inject({ method: 'POST', url: `/v1/runtimes/${honest}/challenges` });
    expect(other.statusCode).toBe(201);
  });

  it('refuses a grant flood from one runtime id with 429 before the service is asked', async () => {
    const body = (i: number) => ({
      runtimeId: 'rt_grantflood',
      requestId: `r${i}`,
      issuedAt: new Date().toISOString(),
      action: 'tickets.read',
      resource: 'ticket/1',
      parametersDigest: '0'.repeat(64),
      audience: 'gw',
      ttlSeconds: 60,
    });
    const codes: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/grants', payload: body(i) });
      codes.push(res.json<ErrorAnswer>().error.code);
    }
    expect(codes.slice(0, 5)).toEqual(Array(5).fill('runtime_not_active'));
    expect(codes.slice(5)).toEqual(Array(15).fill('rate_limited'));
    const other = await app.inject({
      method: 'POST',
      url: '/v1/grants',
      payload: { ...body(99), runtimeId: 'rt_othergrants' },
    });
    expect(other.json<ErrorAnswer>().error.code).toBe('runtime_not_active');
  });

  it('refuses an enrollment flood from one address by address, other addresses served', async () => {
    const burst = DEFAULT_RATE_LIMIT_BUCKETS.enroll.perAddress.burst;
    let limited: ErrorAnswer | undefined;
    for (let i = 0; i < burst * 2 && limited === undefined; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/runtimes',
        remoteAddress: '198.51.100.7',
        payload: { name: 'x' },
      });
      if (res.statusCode === 429) limited = res.json<ErrorAnswer>();
      else expect(res.json<ErrorAnswer>().error.code).toBe('bad_request');
    }
    expect(limited?.error.code).toBe('rate_limited');
    expect(limited?.error.details?.scope).toBe('address');
    const other = await app.inject({
      method: 'POST',
      url: '/v1/runtimes',
      remoteAddress: '198.51.100.8',
      payload: { name: 'x' },
    });
    expect(other.json<ErrorAnswer>().error.code).toBe('bad_request');
  });

  it('keeps the rate-limit state bounded whatever the number of runtimes and addresses', async () => {
    for (let i = 0; i < 1500; i++) {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/runtimes/rt_many${i}/challenges`,
        remoteAddress: `10.9.${i >> 8}.${i & 255}`,
      });
      expect(res.json<ErrorAnswer>().error.code).toBe('unknown_runtime');
    }
    expect(limiter.size).toBeLessThanOrEqual(200);
    expect(limiter.size).toBeGreaterThan(100);
  });
});

describe('body limits per route', () => {
  it('refuses bodies over each route limit with 413 payload_too_large', async () => {
    const cases: [string, number][] = [
      ['/v1/runtimes', 40 * 1024],
      ['/v1/runtimes/rt_abcd/activation', 2 * 1024],
      ['/v1/runtimes/rt_abcd/challenges', 2 * 1024],
      // Larger since measured boot: the quote with an event log and an IMA list.
      ['/v1/runtimes/rt_abcd/attestations', new MeasuredBoot().bodyLimit + 1024],
      // Quote mode carries the same event log and IMA list: the attestation route's limit.
      ['/v1/grants', new MeasuredBoot().bodyLimit + 1024],
      ['/v1/grants/gr_abcd/redeem', 2 * 1024],
    ];
    for (const [url, size] of cases) {
      const res = await app.inject({
        method: 'POST',
        url,
        remoteAddress: '203.0.113.9',
        headers: {
          'content-type': 'application/json',
          // Gateway routes authenticate before the body is read.
          ...(url.endsWith('/redeem') ? { authorization: `Bearer ${gatewayToken}` } : {}),
        },
        payload: JSON.stringify({ pad: 'A'.repeat(size) }),
      });
      expect([url, res.statusCode]).toEqual([url, 413]);
      expect(res.json<ErrorAnswer>().error.code).toBe('payload_too_large');
    }
  });

  it('an oversized redeem without a gateway credential is refused before its body (401)', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abcd/redeem',
      remoteAddress: '203.0.113.9',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ pad: 'A'.repeat(2 * 1024) }),
    });
    expect(res.statusCode).toBe(401);
    expect(res.json<ErrorAnswer>().error.code).toBe('gateway_unauthenticated');
  });
});
