/** Service rules on the fake signer (the same rules run against SoftHSM2 in test/keys). */
import { describe, expect, it } from 'vitest';
import { KeyService } from './key-service.js';
import { MemoryKeyStore } from './key-store.memory.js';
import { createFakeSigner } from './signer.memory.js';
import { TEST_KEY_OPTIONS, activeGrantKid, fakeKeys } from './testing.js';

const claims = (now: number, ttl: number): { exp: number } => ({
  exp: Math.floor(now / 1000) + ttl,
});

describe('KeyService', () => {
  it('passes an HSM fault through typed (hsm_unavailable) and signs again after it', async () => {
    const f = await fakeKeys();
    f.signer.failSigns = true;
    await expect(f.keys.signJws({}, claims(f.now(), 60))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    await expect(f.keys.signAudit(new Uint8Array(3))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    f.signer.failSigns = false;
    await expect(f.keys.signJws({}, claims(f.now(), 60))).resolves.toMatch(
      /^[\w-]+\.[\w-]+\.[\w-]+$/,
    );
  });

  it('a failed sign still holds the retiring key for its exp (fail closed on publication)', async () => {
    const f = await fakeKeys();
    const old = activeGrantKid(f.keys);
    f.signer.failSigns = true;
    await expect(f.keys.signJws({}, claims(f.now(), 250))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    await f.keys.rotate('grant');
    expect(f.keys.get(old).maxExp).toBeGreaterThanOrEqual(Math.floor(f.now() / 1000) + 250);
  });

  it('aborts a rotation the audit hook refuses, and destroys the unused new key', async () => {
    let refuse = false;
    const f = await fakeKeys(
      {},
      { onLifecycle: () => (refuse ? Promise.reject(new Error('audit down')) : Promise.resolve()) },
    );
    const before = f.keys.list();
    // The active grant key, the next grant key (published, not signing) and the audit key.
    expect(f.signer.size).toBe(3);
    refuse = true;
    await expect(f.keys.rotate('grant')).rejects.toThrow('audit down');
    expect(f.keys.list()).toEqual(before);
    expect(await f.store.list()).toHaveLength(before.length);
    // Only the keys the store knows remain in the (fake) HSM.
    for (const k of before) expect(f.signer.has(k.hsmId)).toBe(true);
    expect(f.signer.size).toBe(3);
  });

  it('publishes the next grant key before it signs: a rotation makes it active (issue 18)', async () => {
    const f = await fakeKeys();
    const signing = f.keys.activeGrantKid();
    const cached = new Set(f.keys.jwks().keys.map((k) => k.kid));
    // The set holds the signing key and the next one.
    expect(cached.size).toBe(2);
    const next = [...cached].find((k) => k !== signing) ?? '';
    expect(f.keys.get(next).state).toBe('next');
    expect(f.events.filter((e) => e.type === 'key_published').map((e) => e.kid)).toEqual([next]);
    await f.keys.rotate('grant');
    // The key that signs now was in the set a gateway cached before the rotation.
    expect(f.keys.activeGrantKid()).toBe(next);
    const jws = await f.keys.signJws({}, claims(f.now(), 60));
    const header = JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString()) as {
      kid: string;
    };
    expect(cached.has(header.kid)).toBe(true);
    // A new next key is published in the same write; the old one verifies until its grants expire.
    const after = f.keys.jwks().keys.map((k) => k.kid);
    expect(after[0]).toBe(next);
    expect(after).toContain(signing);
    expect(after).toHaveLength(3);
    expect(f.keys.get(after[1] ?? '').state).toBe('next');
    expect((await f.store.list()).filter((r) => r.state === 'next')).toHaveLength(1);
  });

  it('the rotation period counts from activation, not from when the next key was made', async () => {
    const f = await fakeKeys({ rotationPeriodSeconds: 100 });
    f.advance(100);
    expect((await f.keys.maintain()).rotated).toBe(true);
    // The promoted key was made 100 s ago but became active now: not due again yet.
    expect((await f.keys.maintain()).rotated).toBe(false);
    f.advance(100);
    expect((await f.keys.maintain()).rotated).toBe(true);
  });

  it('a next key is retired only by rotating it in first (key_state_invalid)', async () => {
    const f = await fakeKeys();
    const next = f.keys.list().find((r) => r.state === 'next')?.kid ?? '';
    await expect(f.keys.retire(next, { force: true })).rejects.toMatchObject({
      code: 'key_state_invalid',
    });
  });

  it('a store from before the next key gets one at start, audited as key_published', async () => {
    const f = await fakeKeys();
    const records = await f.store.list();
    const next = records.find((r) => r.state === 'next');
    const store = new MemoryKeyStore();
    await store.putAll(records.filter((r) => r.state !== 'next'));
    const published: string[] = [];
    const again = await KeyService.start(TEST_KEY_OPTIONS, {
      signer: f.signer,
      store,
      onLifecycle: (e) => {
        if (e.type === 'key_published') published.push(e.kid);
        return Promise.resolve();
      },
    });
    const fresh = (await store.list()).filter((r) => r.state === 'next');
    expect(fresh).toHaveLength(1);
    expect(fresh[0]?.kid).not.toBe(next?.kid);
    expect(published).toEqual([fresh[0]?.kid]);
    await again.close();
  });

  it('refuses a store with two next grant keys at start (key_state_invalid)', async () => {
    const f = await fakeKeys();
    const before = await f.store.list();
    await f.keys.rotate('grant');
    const second = (await f.store.list()).find((r) => r.state === 'next');
    if (second === undefined) throw new Error('no next key after the rotation');
    const store = new MemoryKeyStore();
    await store.putAll([...before, second]);
    expect((await store.list()).filter((r) => r.state === 'next')).toHaveLength(2);
    await expect(
      KeyService.start(TEST_KEY_OPTIONS, { signer: f.signer, store }),
    ).rejects.toMatchObject({ code: 'key_state_invalid' });
  });

  it('loses no signature racing a rotation; each names a published key', async () => {
    const f = await fakeKeys();
    const pending = Array.from({ length: 50 }, () => f.keys.signJws({}, claims(f.now(), 60)));
    const rotation = f.keys.rotate('grant');
    const more = Array.from({ length: 50 }, () => f.keys.signJws({}, claims(f.now(), 60)));
    const all = await Promise.all([...pending, ...more]);
    await rotation;
    const published = new Set(f.keys.jwks().keys.map((k) => k.kid));
    for (const jws of all) {
      const header = JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString()) as {
        kid: string;
      };
      expect(published.has(header.kid)).toBe(true);
    }
  });

  it('close is idempotent; a closed service refuses rotation (key_state_invalid)', async () => {
    const f = await fakeKeys();
    await f.keys.close();
    await f.keys.close();
    await expect(f.keys.rotate('grant')).rejects.toMatchObject({ code: 'key_state_invalid' });
    await expect(f.keys.ready()).resolves.toMatchObject({ ok: false });
  });

  it('get refuses an unknown kid (key_not_found)', async () => {
    const f = await fakeKeys();
    expect(() => f.keys.get('nope')).toThrow(expect.objectContaining({ code: 'key_not_found' }));
  });

  it('keeps the audit key in its own token when one is given (a TPM grant token has no Ed25519)', async () => {
    const grantToken = createFakeSigner();
    const auditToken = createFakeSigner();
    const keys = await KeyService.start(TEST_KEY_OPTIONS, {
      signer: grantToken,
      auditSigner: auditToken,
      store: new MemoryKeyStore(),
    });
    const grant = keys.get(activeGrantKid(keys));
    const audit = keys.list().find((r) => r.purpose === 'audit');
    if (audit === undefined) throw new Error('no audit key');
    expect(grantToken.has(grant.hsmId)).toBe(true);
    expect(auditToken.has(grant.hsmId)).toBe(false);
    expect(auditToken.has(audit.hsmId)).toBe(true);
    expect(grantToken.has(audit.hsmId)).toBe(false);
    await expect(keys.signAudit(new Uint8Array(3))).resolves.toMatchObject({ keyId: audit.kid });
    // Either token down makes the service not ready; a fault of one fails only its own keys.
    auditToken.failSigns = true;
    await expect(keys.signAudit(new Uint8Array(3))).rejects.toMatchObject({
      code: 'hsm_unavailable',
    });
    await expect(keys.signJws({}, { exp: 1 })).resolves.toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    await auditToken.close();
    await expect(keys.ready()).resolves.toEqual({ ok: false, reason: 'hsm_unavailable' });
    await auditToken.open();
    await expect(keys.ready()).resolves.toEqual({ ok: true });
    // Destroying a retired grant key removes it from the grant token.
    const { previous } = await keys.rotate('grant');
    if (previous === undefined) throw new Error('no previous key');
    await keys.retire(previous.kid, { force: true });
    await keys.destroy(previous.kid);
    expect(grantToken.has(previous.hsmId)).toBe(false);
    await keys.close();
  });
});
