/** Service rules on the fake signer (the same rules run against SoftHSM2 in test/keys). */
import { describe, expect, it } from 'vitest';
import { fakeKeys } from './testing.js';

const claims = (now: number, ttl: number): Uint8Array =>
  new TextEncoder().encode(JSON.stringify({ exp: Math.floor(now / 1000) + ttl }));

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
    const old = f.keys.activeGrantKid();
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
    expect(f.signer.size).toBe(2);
    refuse = true;
    await expect(f.keys.rotate('grant')).rejects.toThrow('audit down');
    expect(f.keys.list()).toEqual(before);
    expect(await f.store.list()).toHaveLength(before.length);
    // Only the keys the store knows remain in the (fake) HSM.
    for (const k of before) expect(f.signer.has(k.hsmId)).toBe(true);
    expect(f.signer.size).toBe(2);
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
});
