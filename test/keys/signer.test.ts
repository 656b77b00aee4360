/**
 * The PKCS#11 adapter against the real SoftHSM2 token of the test rig: signatures verify
 * with node:crypto and with openssl, private keys cannot be read, unsafe or missing keys
 * are refused.
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pkcs11Signer, type Pkcs11SignerConfig } from '../../src/keys/signer.pkcs11.js';
import type { HsmKey } from '../../src/keys/signer.port.js';
import { testHsm, type SimHsm } from '../rig/sim.js';
import { findPrivate, openssl, pem, plantEcKey, rawSession, rsToDer } from './hsm-tools.js';

let hsm: SimHsm;
let signer: Pkcs11Signer;

/** A signer on the rig token: one session, 10 s deadline, 100 ms recovery back-off. */
function testSigner(overrides: Partial<Pkcs11SignerConfig> = {}): Pkcs11Signer {
  return new Pkcs11Signer({
    modulePath: hsm.module,
    tokenLabel: hsm.tokenLabel,
    pin: hsm.pin,
    sessionPoolSize: 1,
    signDeadlineMs: 10_000,
    recoveryBackoffMs: 100,
    ...overrides,
  });
}
let ec: HsmKey;
let ed: HsmKey;

beforeAll(async () => {
  hsm = await testHsm();
  signer = testSigner({ sessionPoolSize: 2 });
  await signer.open();
  ec = await signer.generate('ES256', 'test-signer-ec');
  ed = await signer.generate('EdDSA', 'test-signer-ed');
});

afterAll(async () => {
  await signer.close();
});

describe('ES256 (P-256) signing', () => {
  it('returns a 64-byte r‖s signature that node:crypto verifies', async () => {
    const data = randomBytes(100);
    const sig = await signer.sign(ec.hsmId, data);
    expect(sig).toHaveLength(64);
    const key = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
    expect(verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
    expect(verify('sha256', Buffer.from('other'), { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(
      false,
    );
  });

  it('verifies with openssl dgst from the exported public key (DER signature)', async () => {
    const data = randomBytes(57);
    const sig = await signer.sign(ec.hsmId, data);
    const out = await openssl(
      { 'pub.pem': pem(ec.publicJwk), 'data.bin': data, 'sig.der': rsToDer(sig) },
      ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.der', 'data.bin'],
    );
    expect(out).toContain('Verified OK');
    await expect(
      openssl(
        { 'pub.pem': pem(ec.publicJwk), 'data.bin': randomBytes(57), 'sig.der': rsToDer(sig) },
        ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.der', 'data.bin'],
      ),
    ).rejects.toThrow();
  });

  it('signs in parallel on the session pool', async () => {
    const inputs = Array.from({ length: 24 }, () => randomBytes(32));
    const sigs = await Promise.all(inputs.map((d) => signer.sign(ec.hsmId, d)));
    const key = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
    sigs.forEach((s, i) => {
      expect(verify('sha256', inputs[i]!, { key, dsaEncoding: 'ieee-p1363' }, s)).toBe(true);
    });
  });
});

describe('signing threads', () => {
  it('answers every sign of mixed ES256 and EdDSA batches with its own signature', async () => {
    const ecKey = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
    const edKey = createPublicKey({ key: { ...ed.publicJwk }, format: 'jwk' });
    const inputs = Array.from({ length: 96 }, (_, i) => randomBytes(16 + (i % 40)));
    const sigs = await Promise.all(
      inputs.map((d, i) => signer.sign(i % 3 === 0 ? ed.hsmId : ec.hsmId, d)),
    );
    sigs.forEach((s, i) => {
      const d = inputs[i]!;
      if (i % 3 === 0) expect(verify(null, d, edKey, s)).toBe(true);
      else expect(verify('sha256', d, { key: ecKey, dsaEncoding: 'ieee-p1363' }, s)).toBe(true);
    });
    // Each answer is a copy of its own: changing one changes no other.
    sigs[1]!.fill(0);
    expect(verify('sha256', inputs[2]!, { key: ecKey, dsaEncoding: 'ieee-p1363' }, sigs[2]!)).toBe(
      true,
    );
  });

  it('signs the bytes given at the call, even if the caller reuses its buffer', async () => {
    const buf = Buffer.from('the first message');
    const pending = signer.sign(ec.hsmId, buf);
    const copy = Buffer.from(buf);
    buf.fill(0x41);
    const sig = await pending;
    const key = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
    expect(verify('sha256', copy, { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
  });

  it('signs with one thread and one session as well', async () => {
    const s = testSigner({ signThreads: 4 });
    await s.open();
    try {
      expect(s.signThreadCount).toBe(1);
      const k = await s.load(ec.hsmId, 'ES256');
      const inputs = Array.from({ length: 40 }, () => randomBytes(32));
      // A key operation on the main thread shares the single session with the thread.
      const [sigs, again] = await Promise.all([
        Promise.all(inputs.map((d) => s.sign(k.hsmId, d))),
        s.load(ec.hsmId, 'ES256'),
      ]);
      expect(again.publicJwk).toEqual(ec.publicJwk);
      const key = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
      sigs.forEach((sig, i) => {
        expect(verify('sha256', inputs[i]!, { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
      });
    } finally {
      await s.close();
    }
  });
});

describe('EdDSA (Ed25519) signing', () => {
  it('verifies with node:crypto and openssl pkeyutl -rawin', async () => {
    const data = randomBytes(80);
    const sig = await signer.sign(ed.hsmId, data);
    expect(sig).toHaveLength(64);
    const key = createPublicKey({ key: { ...ed.publicJwk }, format: 'jwk' });
    expect(verify(null, data, key, sig)).toBe(true);
    const out = await openssl({ 'pub.pem': pem(ed.publicJwk), 'data.bin': data, 'sig.bin': sig }, [
      'pkeyutl',
      '-verify',
      '-pubin',
      '-inkey',
      'pub.pem',
      '-rawin',
      '-in',
      'data.bin',
      '-sigfile',
      'sig.bin',
    ]);
    expect(out).toContain('Signature Verified Successfully');
  });
});

describe('key protection', () => {
  it.each([
    ['ES256', () => ec],
    ['EdDSA', () => ed],
  ])('the %s private key cannot be read (CKR_ATTRIBUTE_SENSITIVE)', (_alg, key) => {
    const { hsmId } = key();
    const attempt = (): unknown =>
      rawSession(hsm, (p, session) =>
        p.C_GetAttributeValue(session, findPrivate(p, session, hsmId), [
          { type: pkcs11js.CKA_VALUE },
        ]),
      );
    expect(attempt).toThrow(pkcs11js.Pkcs11Error);
    try {
      attempt();
    } catch (e) {
      expect((e as pkcs11js.Pkcs11Error).code).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
    }
  });

  it('generated keys are sensitive, never extractable, token objects', () => {
    const attrs = rawSession(hsm, (p, session) =>
      p.C_GetAttributeValue(session, findPrivate(p, session, ec.hsmId), [
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_TOKEN },
      ]),
    );
    expect(attrs.map((a) => a.value[0])).toEqual([1, 0, 1, 1]);
  });

  it.each([
    ['extractable', { sensitive: true, extractable: true }],
    ['not sensitive', { sensitive: false, extractable: false }],
  ])('refuses a key that is %s (hsm_key_unsafe)', async (_what, protection) => {
    const hsmId = randomBytes(16).toString('hex');
    plantEcKey(hsm, hsmId, protection);
    await expect(signer.load(hsmId, 'ES256')).rejects.toMatchObject({ code: 'hsm_key_unsafe' });
    await expect(signer.sign(hsmId, Buffer.from('x'))).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });
  });

  it('refuses a key loaded with the wrong algorithm (hsm_key_unsafe)', async () => {
    const fresh = testSigner();
    await fresh.open();
    try {
      await expect(fresh.load(ec.hsmId, 'EdDSA')).rejects.toMatchObject({ code: 'hsm_key_unsafe' });
    } finally {
      await fresh.close();
    }
  });

  it('reports an unknown key id (hsm_key_missing)', async () => {
    await expect(signer.load(randomBytes(16).toString('hex'), 'ES256')).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });
  });

  it('loads an existing key by id and returns the same public key', async () => {
    const again = await signer.load(ec.hsmId, 'ES256');
    expect(again.publicJwk).toEqual(ec.publicJwk);
    expect(again.label).toBe('test-signer-ec');
  });
});

describe('deadlines', () => {
  it('fails a sign that misses its deadline with hsm_unavailable (reason deadline); the pool survives', async () => {
    const s = testSigner({ signDeadlineMs: 1 });
    await s.open();
    try {
      const k = await s.load(ec.hsmId, 'ES256');
      const inputs = Array.from({ length: 200 }, () => randomBytes(32));
      const results = await Promise.allSettled(inputs.map((d) => s.sign(k.hsmId, d)));
      const late = results.filter((r) => r.status === 'rejected');
      expect(late.length).toBeGreaterThan(0);
      for (const r of late) {
        expect(r.reason).toMatchObject({
          code: 'hsm_unavailable',
          details: { reason: 'deadline' },
        });
      }
      const key = createPublicKey({ key: { ...ec.publicJwk }, format: 'jwk' });
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          expect(verify('sha256', inputs[i]!, { key, dsaEncoding: 'ieee-p1363' }, r.value)).toBe(
            true,
          );
        }
      });
      await expect(s.ready()).resolves.toEqual({ ok: true });
    } finally {
      await s.close();
    }
  });
});

describe('token and lifecycle', () => {
  it('is ready with an open, logged-in session', async () => {
    await expect(signer.ready()).resolves.toEqual({ ok: true });
  });

  it('refuses a token label that does not exist (hsm_unavailable)', async () => {
    const other = testSigner({ tokenLabel: 'no-such-token', signDeadlineMs: 1000 });
    await expect(other.open()).rejects.toMatchObject({ code: 'hsm_unavailable' });
    await other.close();
  });

  it('destroys both objects of a key', async () => {
    const k = await signer.generate('ES256', 'test-destroy');
    await signer.destroy(k.hsmId);
    await expect(signer.load(k.hsmId, 'ES256')).rejects.toMatchObject({ code: 'hsm_key_missing' });
    await expect(signer.sign(k.hsmId, Buffer.from('x'))).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });
  });

  it('close is idempotent and a closed signer fails typed', async () => {
    const s = testSigner({ signDeadlineMs: 1000 });
    await s.open();
    const k = await s.load(ec.hsmId, 'ES256');
    await s.close();
    await s.close();
    await expect(s.sign(k.hsmId, Buffer.from('x'))).rejects.toMatchObject({
      code: 'hsm_key_missing',
    });
    await expect(s.load(k.hsmId, 'ES256')).rejects.toMatchObject({ code: 'hsm_unavailable' });
    await expect(s.ready()).resolves.toMatchObject({ ok: false, reason: 'hsm_unavailable' });
  });
});
