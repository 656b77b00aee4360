/**
 * The key service wired as the appliance wires it (createKeys: PKCS#11 signer on the real
 * SoftHSM2 token, LevelDB store): JWS verification with jose against our JWKS, rotation
 * under concurrent signing, retirement, destruction, restarts and every refusal.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';
import pkcs11js from 'pkcs11js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createKeys,
  type KeyLifecycleEvent,
  type KeysConfig,
  type KeyService,
} from '../../src/keys/index.js';
import { LevelKeyStore } from '../../src/keys/key-store.level.js';
import { thumbprint } from '../../src/keys/jwk.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { testHsm, type SimHsm } from '../rig/sim.js';
import { plantEcKey, rawSession } from './hsm-tools.js';
import { activeGrantKid } from '../../src/keys/testing.js';

let hsm: SimHsm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  hsm = await testHsm();
});

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function config(overrides: Partial<KeysConfig> = {}): KeysConfig {
  return {
    modulePath: hsm.module,
    tokenLabel: hsm.tokenLabel,
    pin: hsm.pin,
    rotationPeriodSeconds: 0,
    grantMaxTtlSeconds: 300,
    signDeadlineMs: 10_000,
    sessionPoolSize: 4,
    maintenanceIntervalMs: 0,
    jwksMaxAgeSeconds: 600,
    ...overrides,
  };
}

async function tempDb(): Promise<Database> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-keys-'));
  const db = await openDatabase(dir);
  cleanups.unshift(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });
  return db;
}

/** A clock the test moves (ms). */
function clock(start = Date.now()): { now: () => number; advance: (s: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (s) => {
      t += s * 1000;
    },
  };
}

async function start(
  db: Database,
  opts: { config?: Partial<KeysConfig>; now?: () => number; events?: KeyLifecycleEvent[] } = {},
): Promise<KeyService> {
  const events = opts.events;
  const keys = await createKeys(config(opts.config), {
    db,
    ...(opts.now === undefined ? {} : { now: opts.now }),
    ...(events === undefined
      ? {}
      : {
          onLifecycle: (e: KeyLifecycleEvent) => {
            events.push(e);
            return Promise.resolve();
          },
        }),
  });
  cleanups.push(() => keys.close());
  return keys;
}

/** What KeyService.signJws takes: JSON members with `exp` as a value. */
type Claims = { readonly exp: number; readonly [member: string]: unknown };

const claims = (exp: number, extra: Record<string, unknown> = {}): Claims => ({
  sub: 'rt_1',
  exp,
  ...extra,
});

async function verifyJws(jws: string, keys: KeyService): Promise<Record<string, unknown>> {
  const { payload } = await compactVerify(jws, createLocalJWKSet(keys.jwks()), {
    algorithms: ['ES256'],
  });
  return JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
}

describe('first start', () => {
  it('creates one active grant key and one active audit key, audited, and publishes the grant key', async () => {
    const events: KeyLifecycleEvent[] = [];
    const keys = await start(await tempDb(), { events });
    const list = keys.list();
    expect(list.map((k) => [k.purpose, k.state, k.alg]).sort()).toEqual([
      ['audit', 'active', 'EdDSA'],
      ['grant', 'active', 'ES256'],
      // Published before it signs (issue 18).
      ['grant', 'next', 'ES256'],
    ]);
    expect(events.map((e) => [e.type, e.purpose, e.reason]).sort()).toEqual([
      ['key_created', 'audit', 'first_start'],
      ['key_created', 'grant', 'first_start'],
      ['key_published', 'grant', 'first_start'],
    ]);
    const grantKey = list.find((k) => k.purpose === 'grant' && k.state === 'active')!;
    const { keys: published } = keys.jwks();
    // The active key first, then the next one.
    expect(published).toHaveLength(2);
    expect(published[1]?.kid).toBe(list.find((k) => k.state === 'next')?.kid);
    const [jwk] = published;
    expect(jwk).toMatchObject({
      kid: grantKey.kid,
      alg: 'ES256',
      use: 'sig',
      kty: 'EC',
      crv: 'P-256',
    });
    expect(Object.keys(jwk!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(await thumbprint(grantKey.publicJwk)).toBe(grantKey.kid);
    await expect(keys.ready()).resolves.toEqual({ ok: true });
  });
});

describe('signing', () => {
  it('signs a grant JWS that jose verifies against our JWKS, header alg/kid/typ', async () => {
    const keys = await start(await tempDb());
    const exp = Math.floor(Date.now() / 1000) + 60;
    const jws = await keys.signJws({ typ: 'grant+jwt' }, claims(exp));
    expect(decodeProtectedHeader(jws)).toEqual({
      alg: 'ES256',
      kid: activeGrantKid(keys),
      typ: 'grant+jwt',
    });
    await expect(verifyJws(jws, keys)).resolves.toMatchObject({ sub: 'rt_1', exp });
    // A flipped payload byte does not verify.
    const [h, p, s] = jws.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ sub: 'rt_2', exp })).toString('base64url')}.${s}`;
    expect(p).not.toBe(tampered.split('.')[1]);
    await expect(verifyJws(tampered, keys)).rejects.toMatchObject({
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });
  });

  it('signs audit checkpoints with the Ed25519 key', async () => {
    const keys = await start(await tempDb());
    const msg = randomBytes(90);
    const { keyId, signature } = await keys.signAudit(msg);
    const { raw, jwk } = keys.auditPublicKey();
    expect(raw).toHaveLength(32);
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: keyId, alg: 'EdDSA' });
    const key = createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
      format: 'der',
      type: 'spki',
    });
    expect(verify(null, msg, key, signature)).toBe(true);
    // The audit key is never in the grant key set.
    expect(keys.jwks().keys.map((k) => k.kid)).not.toContain(keyId);
  });

  it.each([
    ['alg in the header', { alg: 'none' }, claims(Math.floor(Date.now() / 1000) + 60)],
    ['kid in the header', { kid: 'x' }, claims(Math.floor(Date.now() / 1000) + 60)],
    // Unrepresentable in TypeScript; the check stays for callers that are not.
    ['a payload without exp', {}, { sub: 'a' } as unknown as Claims],
    ['a fractional exp', {}, claims(Math.floor(Date.now() / 1000) + 0.5)],
    ['an exp beyond the maximum TTL', {}, claims(Math.floor(Date.now() / 1000) + 10_000)],
  ])('refuses %s (bad_request)', async (_what, header, payload) => {
    const keys = await start(await tempDb());
    await expect(keys.signJws(header, payload)).rejects.toMatchObject({ code: 'bad_request' });
  });
});

describe('rotation', () => {
  it('loses no signature under concurrent signing; every signature verifies against the published set', async () => {
    const events: KeyLifecycleEvent[] = [];
    const keys = await start(await tempDb(), { events });
    const exp = Math.floor(Date.now() / 1000) + 120;
    const first = activeGrantKid(keys);
    let stop = false;
    const results: PromiseSettledResult<string>[] = [];
    const signOne = async (i: number): Promise<void> => {
      const [r] = await Promise.allSettled([
        keys.signJws({ typ: 'grant+jwt' }, claims(exp, { i })),
      ]);
      results.push(r);
    };
    const signers = Array.from({ length: 8 }, async () => {
      let i = 0;
      while (!stop) await signOne(i++);
      await signOne(i);
    });
    const r1 = await keys.rotate('grant');
    const r2 = await keys.rotate('grant');
    stop = true;
    await Promise.all(signers);
    expect(r1.previous?.kid).toBe(first);
    expect(r1.previous?.state).toBe('retiring');
    expect(r2.previous?.kid).toBe(r1.active.kid);
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected).toEqual([]);
    const jwss = results.map((r) => (r as PromiseFulfilledResult<string>).value);
    const kids = new Set(jwss.map((j) => decodeProtectedHeader(j).kid));
    expect(kids).toContain(first);
    expect(kids).toContain(r2.active.kid);
    // The set now holds the active key and both retiring ones.
    // Active, then the next key (published, not signing yet), then the retiring ones.
    const published = keys.jwks().keys.map((k) => k.kid);
    expect(keys.get(published[1] ?? '').state).toBe('next');
    expect(published.filter((_, i) => i !== 1)).toEqual([r2.active.kid, r1.active.kid, first]);
    for (const jws of jwss) await verifyJws(jws, keys);
    // The retiring keys stay until the last grant they signed expires.
    const retiring = keys.list().filter((k) => k.state === 'retiring');
    expect(retiring).toHaveLength(2);
    for (const k of retiring) expect(k.maxExp).toBeGreaterThanOrEqual(exp);
    expect(events.filter((e) => e.type === 'key_rotated').map((e) => e.previousKid)).toEqual([
      first,
      r1.active.kid,
    ]);
  });

  it('retires a retiring key after its last grant expired: it leaves the JWKS and stops verifying', async () => {
    const c = clock();
    const keys = await start(await tempDb(), { now: c.now });
    const exp = Math.floor(c.now() / 1000) + 100;
    const old = activeGrantKid(keys);
    const oldJws = await keys.signJws({ typ: 'grant+jwt' }, claims(exp));
    await keys.rotate('grant');
    expect(await keys.maintain()).toEqual({ rotated: false, retired: [] });
    expect(keys.jwks().keys.map((k) => k.kid)).toContain(old);
    await verifyJws(oldJws, keys);
    // Manual retirement before expiry is refused.
    await expect(keys.retire(old)).rejects.toMatchObject({ code: 'key_state_invalid' });
    c.advance(99);
    expect((await keys.maintain()).retired).toEqual([]);
    c.advance(1);
    expect((await keys.maintain()).retired).toEqual([old]);
    expect(keys.get(old)).toMatchObject({ state: 'retired', maxExp: exp });
    expect(keys.jwks().keys.map((k) => k.kid)).not.toContain(old);
    await expect(verifyJws(oldJws, keys)).rejects.toMatchObject({
      code: 'ERR_JWKS_NO_MATCHING_KEY',
    });
  });

  it('rotates on schedule', async () => {
    const c = clock();
    const keys = await start(await tempDb(), {
      now: c.now,
      config: { rotationPeriodSeconds: 3600 },
    });
    const first = activeGrantKid(keys);
    c.advance(3599);
    expect((await keys.maintain()).rotated).toBe(false);
    await keys.signJws({}, claims(Math.floor(c.now() / 1000) + 60));
    c.advance(1);
    expect(await keys.maintain()).toEqual({ rotated: true, retired: [] });
    expect(activeGrantKid(keys)).not.toBe(first);
    expect(keys.get(first).state).toBe('retiring');
    // With nothing signed since start, the previous key has no live grant: retired at once.
    const second = activeGrantKid(keys);
    c.advance(3600);
    expect(await keys.maintain()).toEqual({ rotated: true, retired: [first, second] });
  });

  it('rotates the audit key: the previous one is retired at once', async () => {
    const keys = await start(await tempDb());
    const before = keys.auditPublicKey().jwk.kid;
    const { active, previous } = await keys.rotate('audit');
    expect(previous).toMatchObject({ kid: before, state: 'retired' });
    expect(keys.auditPublicKey().jwk.kid).toBe(active.kid);
    const { keyId } = await keys.signAudit(Buffer.from('checkpoint'));
    expect(keyId).toBe(active.kid);
  });

  it('does not rotate when the audit hook refuses the event, and leaves no new key', async () => {
    const db = await tempDb();
    let refuse = false;
    const keys = await createKeys(config(), {
      db,
      onLifecycle: () => (refuse ? Promise.reject(new Error('audit down')) : Promise.resolve()),
    });
    cleanups.push(() => keys.close());
    const before = keys.list();
    refuse = true;
    await expect(keys.rotate('grant')).rejects.toThrow('audit down');
    expect(keys.list()).toEqual(before);
  });
});

describe('the published set', () => {
  it('has a strong ETag that changes with the set, and a max-age bounded by the next change', async () => {
    const c = clock();
    const keys = await start(await tempDb(), {
      now: c.now,
      config: { rotationPeriodSeconds: 1000, jwksMaxAgeSeconds: 600 },
    });
    const a = keys.publishedKeySet();
    expect(a.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(a.maxAgeSeconds).toBe(600);
    c.advance(700);
    expect(keys.publishedKeySet().maxAgeSeconds).toBe(300);
    expect(keys.publishedKeySet().etag).toBe(a.etag);
    await keys.signJws({}, claims(Math.floor(c.now() / 1000) + 120));
    await keys.rotate('grant');
    const b = keys.publishedKeySet();
    expect(b.etag).not.toBe(a.etag);
    // The retiring key leaves in 120 s: no cache may keep the set longer.
    expect(b.maxAgeSeconds).toBe(120);
    c.advance(2000);
    expect(keys.publishedKeySet().maxAgeSeconds).toBe(0);
  });
});

describe('retire and destroy', () => {
  it('follows active -> retiring -> retired -> destroyed, refusing every other step with its code', async () => {
    const events: KeyLifecycleEvent[] = [];
    const keys = await start(await tempDb(), { events });
    const kid = activeGrantKid(keys);
    await expect(keys.retire('unknown')).rejects.toMatchObject({ code: 'key_not_found' });
    await expect(keys.destroy('unknown')).rejects.toMatchObject({ code: 'key_not_found' });
    await expect(keys.retire(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    await expect(keys.destroy(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    await keys.signJws({}, claims(Math.floor(Date.now() / 1000) + 200));
    await keys.rotate('grant');
    await expect(keys.destroy(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    await expect(keys.retire(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    const retired = await keys.retire(kid, { force: true });
    expect(retired.state).toBe('retired');
    await expect(keys.retire(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    const hsmId = retired.hsmId;
    const count = (): number =>
      rawSession(hsm, (p, session) => {
        p.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_ID, value: Buffer.from(hsmId, 'hex') }]);
        const n = p.C_FindObjects(session, 4).length;
        p.C_FindObjectsFinal(session);
        return n;
      });
    expect(count()).toBe(2);
    const destroyed = await keys.destroy(kid);
    expect(destroyed.destroyedAt).toBeDefined();
    expect(count()).toBe(0);
    await expect(keys.destroy(kid)).rejects.toMatchObject({ code: 'key_state_invalid' });
    expect(events.map((e) => e.type).slice(-3)).toEqual([
      'key_rotated',
      'key_retired',
      'key_destroyed',
    ]);
  });
});

describe('restart', () => {
  it('keeps the active and retiring keys across a restart, checked again in the HSM', async () => {
    const db = await tempDb();
    const first = await createKeys(config(), { db });
    const old = activeGrantKid(first);
    await first.signJws({}, claims(Math.floor(Date.now() / 1000) + 100));
    await first.rotate('grant');
    const active = activeGrantKid(first);
    const audit = first.auditPublicKey().jwk.kid;
    await first.close();
    await first.close();
    const second = await start(db);
    expect(activeGrantKid(second)).toBe(active);
    expect(second.auditPublicKey().jwk.kid).toBe(audit);
    expect(
      second
        .jwks()
        .keys.map((k) => k.kid)
        .filter((k) => second.get(k).state !== 'next'),
    ).toEqual([active, old]);
    await verifyJws(await second.signJws({}, claims(Math.floor(Date.now() / 1000) + 100)), second);
  });

  it('refuses to start on a stored key that can leave the HSM (hsm_key_unsafe)', async () => {
    const db = await tempDb();
    const keys = await createKeys(config(), { db });
    const good = keys.list().find((k) => k.purpose === 'grant')!;
    await keys.close();
    const hsmId = randomBytes(16).toString('hex');
    plantEcKey(hsm, hsmId, { sensitive: true, extractable: true });
    await new LevelKeyStore(db).putAll([{ ...good, hsmId }]);
    await expect(createKeys(config(), { db })).rejects.toMatchObject({ code: 'hsm_key_unsafe' });
  });

  it('refuses to start when the HSM object is not the stored key (hsm_key_unsafe)', async () => {
    const db = await tempDb();
    const keys = await createKeys(config(), { db });
    const [grant, audit] = ['grant', 'audit'].map((p) => keys.list().find((k) => k.purpose === p)!);
    await keys.close();
    // The grant record now names another (safe) P-256 key's object.
    const other = await createKeys(config(), { db: await tempDb() });
    const otherGrant = other.list().find((k) => k.purpose === 'grant')!;
    await other.close();
    await new LevelKeyStore(db).putAll([{ ...grant!, hsmId: otherGrant.hsmId }]);
    await expect(createKeys(config(), { db })).rejects.toMatchObject({ code: 'hsm_key_unsafe' });
    expect(audit).toBeDefined();
  });

  it('refuses to start on a stored key whose HSM object is gone (hsm_key_missing)', async () => {
    const db = await tempDb();
    const keys = await createKeys(config(), { db });
    const grant = keys.list().find((k) => k.purpose === 'grant')!;
    await keys.close();
    await new LevelKeyStore(db).putAll([{ ...grant, hsmId: randomBytes(16).toString('hex') }]);
    await expect(createKeys(config(), { db })).rejects.toMatchObject({ code: 'hsm_key_missing' });
  });

  it('refuses to start with two active keys of one purpose (key_state_invalid)', async () => {
    const db = await tempDb();
    const keys = await createKeys(config(), { db });
    const grant = keys.list().find((k) => k.purpose === 'grant' && k.state === 'active')!;
    await keys.close();
    await new LevelKeyStore(db).putAll([{ ...grant, kid: 'second-active' }]);
    await expect(createKeys(config(), { db })).rejects.toMatchObject({ code: 'key_state_invalid' });
  });
});
