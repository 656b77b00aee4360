/**
 * The grant routes behind the operator auth hook, through app.inject() on the configured
 * server: runtime routes refuse operator credentials, lineage and revocation need an
 * operator, params are validated. The service runs over an in-memory store and ports that
 * must not be reached (the pipeline itself is tested in e2e.test.ts on the real parts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttestationService } from '../../src/attestation/index.js';
import { createFakeGrantStore, GrantService, type GrantsConfig } from '../../src/grants/index.js';
import { createServer, type App } from '../../src/http/app.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { grantsRoutes } from '../../src/http/routes/grants.js';
import { runtimesRoutes } from '../../src/http/routes/runtimes.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { LevelGatewayStore } from '../../src/operators/gateway-store.level.js';
import { UnauthenticatedError } from '../../src/operators/errors.js';
import { MemoryGatewayStore } from '../../src/operators/gateway-store.memory.js';
import { GatewayRegistry } from '../../src/operators/gateways.js';
import type { OperatorActor } from '../../src/operators/roles.js';

const OPERATOR = `gop_${'0'.repeat(16)}${'A'.repeat(43)}`;
const AUDITOR = `gop_${'1'.repeat(16)}${'A'.repeat(43)}`;
const unreachable = (): never => {
  throw new Error('the service must not be reached');
};

let app: App;
let gatewayToken: string;

const SETTINGS: GrantsConfig = {
  issuer: 'grantor-routes',
  maxTtlSeconds: 300,
  clockSkewSeconds: 60,
  maxDepth: 2,
  maxChildren: 64,
  dependencyDeadlineMs: 1000,
  replayCacheSize: 10,
};
/** Ports the route tests must never reach. */
const UNREACHABLE = {
  attestation: {
    getRuntime: unreachable,
    sessionFor: unreachable,
    proveQuote: unreachable,
  },
  policy: { decide: unreachable },
  audit: { append: unreachable },
  keys: { signGrantToken: unreachable },
  store: createFakeGrantStore(),
};

beforeAll(async () => {
  const grants = new GrantService(SETTINGS, UNREACHABLE);
  app = createServer();
  const gateways = new GatewayRegistry(new MemoryGatewayStore());
  gatewayToken = (await gateways.enroll({ name: 'gw', audiences: ['gw'] }, 'cli')).token;
  await app.register(operatorAuth, {
    gateways,
    tokens: {
      authenticate: (token: string): Promise<OperatorActor> => {
        if (token === OPERATOR)
          return Promise.resolve({
            kind: 'operator',
            id: 'tok_op',
            role: 'operator',
            name: 'op',
          } as OperatorActor);
        if (token === AUDITOR)
          return Promise.resolve({
            kind: 'operator',
            id: 'tok_au',
            role: 'auditor',
            name: 'au',
          } as OperatorActor);
        return Promise.reject(new UnauthenticatedError());
      },
    },
  });
  await app.register(grantsRoutes, { grants });
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const codeOf = (body: string): string =>
  (JSON.parse(body) as { error: { code: string } }).error.code;

describe('grant routes and roles', () => {
  it('POST /v1/grants refuses an operator credential (403 forbidden)', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/grants',
      headers: bearer(OPERATOR),
      payload: {},
    });
    expect(res.statusCode).toBe(403);
    expect(codeOf(res.body)).toBe('forbidden');
  });

  it('POST /v1/grants validates the body against the schema (400 bad_request)', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/grants',
      payload: { runtimeId: 'rt_x' },
    });
    expect(res.statusCode).toBe(400);
    expect(codeOf(res.body)).toBe('bad_request');
  });

  it('redeem refuses an operator credential and validates params', async () => {
    const op = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/redeem',
      headers: bearer(OPERATOR),
      payload: { audience: 'gw' },
    });
    expect(op.statusCode).toBe(403);
    expect(codeOf(op.body)).toBe('forbidden');
    const none = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/redeem',
      payload: { audience: 'gw' },
    });
    expect(none.statusCode).toBe(401);
    expect(codeOf(none.body)).toBe('gateway_unauthenticated');
    const gw = bearer(gatewayToken);
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/grants/not-a-grant/redeem',
      headers: gw,
      payload: { audience: 'gw' },
    });
    expect(bad.statusCode).toBe(400);
    const extra = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/redeem',
      headers: gw,
      payload: { audience: 'gw', outcome: 'maybe' },
    });
    expect(extra.statusCode).toBe(400);
    const unknown = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/redeem',
      headers: gw,
      payload: { audience: 'gw' },
    });
    expect(unknown.statusCode).toBe(404);
    expect(codeOf(unknown.body)).toBe('grant_not_found');
  });

  it('outcome refuses an operator credential (403) and no credential (401)', async () => {
    const op = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/outcome',
      headers: bearer(OPERATOR),
      payload: { outcome: 'succeeded' },
    });
    expect(op.statusCode).toBe(403);
    expect(codeOf(op.body)).toBe('forbidden');
    const none = await app.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/outcome',
      payload: { outcome: 'succeeded' },
    });
    expect(none.statusCode).toBe(401);
    expect(codeOf(none.body)).toBe('gateway_unauthenticated');
  });

  it('lineage needs an auditor or operator: 401 without, 404 grant_not_found with', async () => {
    const none = await app.inject({ method: 'GET', url: '/v1/grants/gr_abc/lineage' });
    expect(none.statusCode).toBe(401);
    expect(codeOf(none.body)).toBe('unauthenticated');
    const au = await app.inject({
      method: 'GET',
      url: '/v1/grants/gr_abc/lineage',
      headers: bearer(AUDITOR),
    });
    expect(codeOf(au.body)).toBe('grant_not_found');
  });

  it('revoke needs an operator: 401 without, 403 for an auditor, 404 for an operator on an unknown grant', async () => {
    const url = '/v1/grants/gr_abc/revoke';
    expect(codeOf((await app.inject({ method: 'POST', url })).body)).toBe('unauthenticated');
    expect(codeOf((await app.inject({ method: 'POST', url, headers: bearer(AUDITOR) })).body)).toBe(
      'forbidden',
    );
    const op = await app.inject({ method: 'POST', url, headers: bearer(OPERATOR) });
    expect(op.statusCode).toBe(404);
    expect(codeOf(op.body)).toBe('grant_not_found');
  });
});

describe('routes over parts that fail or are missing', () => {
  it('a gateway store that fails answers 503 gateway_store_unavailable, not 500', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-routes-'));
    const db = await openDatabase(join(dir, 'db'));
    const gateways = new GatewayRegistry(new LevelGatewayStore(db));
    const { token } = await gateways.enroll({ name: 'gw', audiences: ['gw'] }, 'cli');
    const failing = createServer();
    await failing.register(operatorAuth, {
      gateways,
      tokens: { authenticate: () => Promise.reject(new UnauthenticatedError()) },
    });
    await failing.register(grantsRoutes, { grants: new GrantService(SETTINGS, UNREACHABLE) });
    await failing.ready();
    await db.close();
    const res = await failing.inject({
      method: 'POST',
      url: '/v1/grants/gr_abc/redeem',
      headers: bearer(token),
      payload: { audience: 'gw' },
    });
    expect(res.statusCode).toBe(503);
    expect(codeOf(res.body)).toBe('gateway_store_unavailable');
    await failing.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the revoke routes never act for an operator nobody authenticated (401, no default name)', async () => {
    // Mounted without the auth plugin: before, the handlers acted as `operator`.
    const bare = createServer();
    const revoked: string[] = [];
    const grants = new GrantService(SETTINGS, UNREACHABLE);
    await bare.register(grantsRoutes, { grants });
    await bare.register(runtimesRoutes, {
      attestation: {
        attestationBodyLimit: 0,
        revoke: (id: string) => {
          revoked.push(id);
          return Promise.resolve({ runtimeId: id, state: 'revoked' });
        },
      } as unknown as AttestationService,
      revokeGrants: (id) => {
        revoked.push(id);
        return Promise.resolve({ revoked: [] });
      },
    });
    await bare.ready();
    for (const url of ['/v1/grants/gr_abc/revoke', '/v1/runtimes/rt_abc/revoke']) {
      const res = await bare.inject({ method: 'POST', url });
      expect(res.statusCode, url).toBe(401);
      expect(codeOf(res.body)).toBe('unauthenticated');
    }
    expect(revoked).toEqual([]);
    await bare.close();
  });
});
