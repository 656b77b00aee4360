/**
 * The key routes through app.inject() on the lead's server (real error handler and
 * validators) with the real key service on the SoftHSM2 token.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type App } from '../../src/http/app.js';
import { keysRoutes } from '../../src/http/routes/keys.js';
import { MemoryApprovalStore } from '../../src/operators/approval-store.memory.js';
import { Approvals } from '../../src/operators/approvals.js';
import type { OperatorActor } from '../../src/operators/roles.js';

const approvals = new Approvals({ store: new MemoryApprovalStore() });
import { createKeys, type KeyService } from '../../src/keys/index.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { testHsm } from '../rig/sim.js';
import { activeGrantKid } from '../../src/keys/testing.js';

let dir: string;
let db: Database;
let keys: KeyService;
let app: App;
const roles = new Map<string, unknown>();

beforeAll(async () => {
  const hsm = await testHsm();
  dir = await mkdtemp(join(tmpdir(), 'grantor-keys-routes-'));
  db = await openDatabase(dir);
  keys = await createKeys(
    {
      modulePath: hsm.module,
      tokenLabel: hsm.tokenLabel,
      pin: hsm.pin,
      rotationPeriodSeconds: 86_400,
      grantMaxTtlSeconds: 300,
      signDeadlineMs: 10_000,
      maintenanceIntervalMs: 0,
      jwksMaxAgeSeconds: 600,
    },
    { db },
  );
  app = createServer();
  app.addHook('onRoute', (route) => {
    roles.set(
      `${route.method.toString()} ${route.url}`,
      (route.config as { role?: unknown } | undefined)?.role,
    );
  });
  await app.register(keysRoutes, { keys, approvals });
  await app.ready();
});

afterAll(async () => {
  await app.close();
  await keys.close();
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GET /.well-known/jwks.json', () => {
  it('serves the grant keys with an ETag and a bounded max-age, and 304 on a matching If-None-Match', async () => {
    const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json<JSONWebKeySet>();
    expect(body).toEqual(keys.jwks());
    // The active key and the next one (published before it signs).
    expect(body.keys).toHaveLength(2);
    const etag = String(res.headers.etag);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const maxAge = Number(
      /^public, max-age=(\d+)$/.exec(String(res.headers['cache-control']))?.[1],
    );
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThanOrEqual(600);

    for (const tag of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const cached = await app.inject({
        method: 'GET',
        url: '/.well-known/jwks.json',
        headers: { 'if-none-match': tag },
      });
      expect(cached.statusCode).toBe(304);
      expect(cached.body).toBe('');
      expect(cached.headers.etag).toBe(etag);
    }
    const stale = await app.inject({
      method: 'GET',
      url: '/.well-known/jwks.json',
      headers: { 'if-none-match': '"stale"' },
    });
    expect(stale.statusCode).toBe(200);
  });

  it('verifies a grant signed by the service', async () => {
    const jws = await keys.signJws(
      { typ: 'grant+jwt' },
      { exp: Math.floor(Date.now() / 1000) + 60 },
    );
    const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    await expect(
      compactVerify(jws, createLocalJWKSet(res.json<JSONWebKeySet>())),
    ).resolves.toBeDefined();
  });
});

describe('operator routes', () => {
  it('declare the role their future authentication hook checks', () => {
    expect(roles.get('GET /v1/keys')).toEqual(['operator', 'key_custodian']);
    expect(roles.get('POST /v1/keys/rotate')).toBe('key_custodian');
    expect(roles.get('GET /.well-known/jwks.json')).toBeUndefined();
  });

  it('GET /v1/keys lists grant keys by default, audit keys on request, without HSM internals', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/keys' });
    expect(res.statusCode).toBe(200);
    const { keys: listed } = res.json<{ keys: Record<string, unknown>[] }>();
    expect(listed.length).toBeGreaterThan(0);
    for (const k of listed) {
      expect(k).toMatchObject({ purpose: 'grant', alg: 'ES256' });
      expect(Object.keys(k)).not.toContain('hsmId');
      expect(Object.keys(k)).not.toContain('publicJwk');
      expect(k.hsmLabel).toEqual(expect.any(String));
      expect(k.createdAt).toEqual(expect.any(String));
    }
    const audit = await app.inject({ method: 'GET', url: '/v1/keys?purpose=audit' });
    expect(audit.json<{ keys: { purpose: string }[] }>().keys.map((k) => k.purpose)).toEqual([
      'audit',
    ]);
  });

  it('GET /v1/keys refuses an unknown purpose (bad_request)', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/keys?purpose=root' });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'bad_request' } });
  });

  it('POST /v1/keys/rotate makes a new active key, the previous one retiring and still published', async () => {
    const before = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    const oldKid = activeGrantKid(keys);
    await keys.signJws({}, { exp: Math.floor(Date.now() / 1000) + 120 });
    const res = await app.inject({ method: 'POST', url: '/v1/keys/rotate', payload: {} });
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      active: { kid: string; state: string };
      previous: { kid: string; state: string; lastGrantExpiresAt?: string };
    }>();
    expect(body.active.state).toBe('active');
    expect(body.active.kid).toBe(activeGrantKid(keys));
    expect(body.previous).toMatchObject({ kid: oldKid, state: 'retiring' });
    expect(body.previous.lastGrantExpiresAt).toEqual(expect.any(String));
    const after = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(after.headers.etag).not.toBe(before.headers.etag);
    const kids = after.json<JSONWebKeySet>().keys.map((k) => k.kid);
    // Active, the new next key, then the retiring one.
    expect(kids).toHaveLength(3);
    expect([kids[0], kids[2]]).toEqual([body.active.kid, oldKid]);
    // The old ETag no longer matches.
    const cached = await app.inject({
      method: 'GET',
      url: '/.well-known/jwks.json',
      headers: { 'if-none-match': String(before.headers.etag) },
    });
    expect(cached.statusCode).toBe(200);
  });

  it('POST /v1/keys/rotate without a body rotates the grant key', async () => {
    const kid = activeGrantKid(keys);
    const res = await app.inject({ method: 'POST', url: '/v1/keys/rotate' });
    expect(res.json()).toMatchObject({ previous: { kid } });
    expect(res.statusCode).toBe(200);
  });

  it('POST /v1/keys/rotate rotates the audit key on request, under dual control only', async () => {
    const before = keys.auditPublicKey().jwk.kid;
    const rotate = () =>
      app.inject({ method: 'POST', url: '/v1/keys/rotate', payload: { purpose: 'audit' } });
    const alone = await rotate();
    expect(alone.statusCode).toBe(409);
    expect(alone.json<{ error: { code: string } }>().error.code).toBe('approval_required');
    const custodian = (person: string): OperatorActor => ({
      kind: 'operator',
      id: `tok_${person}`,
      person,
      role: 'key_custodian',
      name: person,
      credential: 'token',
      expiresAt: '2099-01-01T00:00:00Z',
    });
    const req = await approvals.request(custodian('kim'), 'audit_key.rotate', {});
    await approvals.approve(custodian('kai'), req.id);
    await approvals.approve(custodian('kit'), req.id);
    const res = await rotate();
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      active: { purpose: 'audit', alg: 'EdDSA' },
      previous: { kid: before, state: 'retired' },
    });
  });

  it.each([
    ['an unknown purpose', { purpose: 'root' }],
    ['an unknown member', { purpose: 'grant', force: true }],
  ])('POST /v1/keys/rotate refuses %s (bad_request)', async (_what, payload) => {
    const kid = activeGrantKid(keys);
    const res = await app.inject({ method: 'POST', url: '/v1/keys/rotate', payload });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'bad_request' } });
    expect(activeGrantKid(keys)).toBe(kid);
  });
});
