/**
 * Grant keys held in the appliance's TPM through PKCS#11 (tpm2-pkcs11), wired as the
 * appliance wires them (createKeys): a real swtpm behind tpm2-abrmd, a tpm2-pkcs11 token
 * provisioned by scripts/sim/provision-tpm-pkcs11, the audit checkpoint key (Ed25519, which a
 * TPM has not) in the run's SoftHSM2 token. The ES256 grant key is generated in the TPM,
 * verified with jose against our JWKS, rotated, retired, destroyed, reloaded after a
 * restart, and fails closed (hsm_unavailable) while the TPM is away, then recovers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKeys, type KeysConfig, type KeyService } from '../../src/keys/index.js';
import { Pkcs11Signer } from '../../src/keys/signer.pkcs11.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import {
  provisionSimTpmToken,
  startSimTpm,
  testHsm,
  useTpmToken,
  type SimHsm,
  type SimTpm,
  type SimTpmToken,
} from '../rig/sim.js';
import { activeGrantKid } from '../../src/keys/testing.js';

let root: string;
let tpm: SimTpm;
let token: SimTpmToken;
let hsm: SimHsm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grantor-keys-tpm-'));
  tpm = await startSimTpm(undefined, { resourceManager: true });
  token = await provisionSimTpmToken(join(root, 'token'), tpm, 'grantor-tpm-keys');
  useTpmToken(token);
  hsm = await testHsm();
});

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

afterAll(async () => {
  await tpm.destroy();
  await rm(root, { recursive: true, force: true });
});

function config(overrides: Partial<KeysConfig> = {}): KeysConfig {
  return {
    modulePath: token.module,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
    audit: { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
    rotationPeriodSeconds: 0,
    grantMaxTtlSeconds: 300,
    signDeadlineMs: 10_000,
    sessionPoolSize: 2,
    recoveryBackoffMs: 50,
    maintenanceIntervalMs: 0,
    ...overrides,
  };
}

async function tempDb(): Promise<Database> {
  const dir = await mkdtemp(join(root, 'db-'));
  const db = await openDatabase(dir);
  cleanups.unshift(async () => {
    await db.close();
  });
  return db;
}

async function start(db: Database, now?: () => number): Promise<KeyService> {
  const keys = await createKeys(config(), { db, ...(now === undefined ? {} : { now }) });
  cleanups.push(() => keys.close());
  return keys;
}

/** What KeyService.signJws takes: JSON members with `exp` as a value. */
type Claims = { readonly exp: number; readonly [member: string]: unknown };

function claims(exp: number, extra: Record<string, unknown> = {}): Claims {
  return { sub: 'rt_1', exp, ...extra };
}

async function verifies(jws: string, keys: KeyService): Promise<string> {
  const { protectedHeader } = await compactVerify(jws, createLocalJWKSet(keys.jwks()), {
    algorithms: ['ES256'],
  });
  return String(protectedHeader.kid);
}

/** A signer of the test's own on one token, to look at objects the service made. */
async function inspector(module: string, label: string, pin: string): Promise<Pkcs11Signer> {
  const s = new Pkcs11Signer({
    modulePath: module,
    tokenLabel: label,
    pin,
    sessionPoolSize: 1,
    signDeadlineMs: 10_000,
    recoveryBackoffMs: 0,
  });
  await s.open();
  cleanups.push(() => s.close());
  return s;
}

describe('grant keys in the TPM (tpm2-pkcs11), the audit key in SoftHSM2', () => {
  it('generates the ES256 grant key in the TPM token and the Ed25519 audit key in the HSM', async () => {
    const keys = await start(await tempDb());
    const [grant] = keys.list().filter((r) => r.purpose === 'grant' && r.state === 'active');
    const [audit] = keys.list().filter((r) => r.purpose === 'audit');
    expect(grant?.alg).toBe('ES256');
    expect(audit?.alg).toBe('EdDSA');
    if (grant === undefined || audit === undefined) throw new Error('keys missing');

    const onTpm = await inspector(token.module, token.tokenLabel, token.pin);
    await expect(onTpm.load(grant.hsmId, 'ES256')).resolves.toMatchObject({
      publicJwk: grant.publicJwk,
    });
    await expect(onTpm.load(audit.hsmId, 'EdDSA')).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });
    const onHsm = await inspector(hsm.module, hsm.tokenLabel, hsm.pin);
    await expect(onHsm.load(grant.hsmId, 'ES256')).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });

    const jws = await keys.signJws(
      { typ: 'grant+jwt' },
      claims(Math.floor(Date.now() / 1000) + 60),
    );
    expect(await verifies(jws, keys)).toBe(grant.kid);
    const checkpoint = Buffer.from('grantor checkpoint');
    const { keyId, signature } = await keys.signAudit(checkpoint);
    expect(keyId).toBe(audit.kid);
    const { createPublicKey, verify } = await import('node:crypto');
    const auditKey = createPublicKey({ key: { ...keys.auditPublicKey().jwk }, format: 'jwk' });
    expect(verify(null, checkpoint, auditKey, signature)).toBe(true);
    await expect(keys.ready()).resolves.toEqual({ ok: true });
  });

  it('rotates under concurrent signing, retires, destroys the TPM object; a restart reloads the key', async () => {
    let t = Date.now();
    const now = (): number => t;
    const db = await tempDb();
    const keys = await start(db, now);
    const first = activeGrantKid(keys);
    const exp = Math.floor(t / 1000) + 60;
    const signing = Array.from({ length: 24 }, (_, i) =>
      keys.signJws({ typ: 'grant+jwt' }, claims(exp, { i })),
    );
    const rotation = keys.rotate('grant');
    const jwss = await Promise.all(signing);
    const { active, previous } = await rotation;
    expect(previous?.kid).toBe(first);
    expect(previous?.state).toBe('retiring');
    expect(active.kid).not.toBe(first);
    // Every grant signed around the rotation verifies against the published set.
    for (const jws of jwss) expect([first, active.kid]).toContain(await verifies(jws, keys));
    const after = await keys.signJws({ typ: 'grant+jwt' }, claims(exp));
    expect(decodeProtectedHeader(after).kid).toBe(active.kid);

    // Retired once every grant the old key signed has expired; then unpublished.
    await expect(keys.retire(first)).rejects.toMatchObject({ code: 'key_state_invalid' });
    t += 61_000;
    expect((await keys.maintain()).retired).toEqual([first]);
    // The active key and the next one (published before it signs) remain.
    expect(keys.jwks().keys.map((k) => k.kid)).toEqual([
      active.kid,
      keys.list().find((r) => r.state === 'next')?.kid,
    ]);
    await expect(verifies(jwss[0] ?? '', keys)).rejects.toThrow();

    // Destroyed: the object is gone from the TPM token.
    const destroyed = await keys.destroy(first);
    const onTpm = await inspector(token.module, token.tokenLabel, token.pin);
    await expect(onTpm.load(destroyed.hsmId, 'ES256')).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });

    // A restart finds the active key in the TPM again (checked against the store's record).
    await keys.close();
    const again = await start(db, now);
    expect(activeGrantKid(again)).toBe(active.kid);
    expect(await verifies(await again.signJws({}, claims(exp)), again)).toBe(active.kid);
  });

  it('fails closed (hsm_unavailable) while the TPM is away and signs again when it is back', async () => {
    const keys = await start(await tempDb());
    const kid = activeGrantKid(keys);
    const exp = (): number => Math.floor(Date.now() / 1000) + 60;
    await verifies(await keys.signJws({}, claims(exp())), keys);

    await tpm.stop();
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, () => keys.signJws({}, claims(exp()))),
      );
      // Not one signature comes out of a TPM that is not there, and each failure is typed.
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'hsm_unavailable' });
      }
      expect((await keys.ready()).ok).toBe(false);
    } finally {
      await tpm.restart();
    }

    // Recovery re-initialises the module and re-finds the key (still the pinned one).
    let jws: string | undefined;
    for (let i = 0; i < 100 && jws === undefined; i++) {
      jws = await keys.signJws({}, claims(exp())).catch(async () => {
        await new Promise((r) => setTimeout(r, 100));
        return undefined;
      });
    }
    if (jws === undefined) throw new Error('signing did not recover');
    expect(await verifies(jws, keys)).toBe(kid);
    await expect(keys.ready()).resolves.toEqual({ ok: true });
  });
});
