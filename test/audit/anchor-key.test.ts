/**
 * The anchor write key on a real SoftHSM2 token: it is found only when exactly one safe key
 * pair carries its label, and a refused PIN is never presented again.
 */
import { createPublicKey, createHash, verify } from 'node:crypto';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import { ANCHOR_KEY_LABEL } from '../../src/audit/anchor-key.port.js';
import { P256_PARAMS, type Handle } from '../../src/keys/key-inspection.pkcs11.js';
import { acquireLibrary, releaseLibrary, type Library } from '../../src/keys/library.pkcs11.js';
import { findTokenSlot, loginUser } from '../../src/keys/token.pkcs11.js';
import { provisionSimHsm, type SimHsm } from '../rig/sim.js';
import { tempDirs } from '../../src/shared/testing/temp-dirs.js';
import { AnchorKeyError } from '../../src/audit/errors.js';

const tmp = tempDirs('grantor-anchor-key-');
let hsm: SimHsm;
let lib: Library;
let session: Handle;

/** A key pair under the anchor key's label, with the private half's protection as given. */
function addPair(priv: { sensitive: boolean; extractable: boolean }): void {
  const label = { type: pkcs11js.CKA_LABEL, value: ANCHOR_KEY_LABEL };
  lib.p.C_GenerateKeyPair(
    session,
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      label,
      { type: pkcs11js.CKA_EC_PARAMS, value: P256_PARAMS },
      { type: pkcs11js.CKA_VERIFY, value: true },
    ],
    [
      { type: pkcs11js.CKA_TOKEN, value: true },
      label,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: priv.sensitive },
      { type: pkcs11js.CKA_EXTRACTABLE, value: priv.extractable },
    ],
  );
}

function removePairs(): void {
  lib.p.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: ANCHOR_KEY_LABEL }]);
  const found = lib.p.C_FindObjects(session, 16);
  lib.p.C_FindObjectsFinal(session);
  for (const h of found) lib.p.C_DestroyObject(session, h);
}

async function refusal(pin?: string): Promise<unknown> {
  const key = new Pkcs11AnchorKey({
    modulePath: hsm.module,
    tokenLabel: hsm.tokenLabel,
    pin: pin ?? hsm.pin,
  });
  try {
    return await key.publicPoint().then(
      () => undefined,
      (e: unknown) => e,
    );
  } finally {
    await key.close();
  }
}

beforeAll(async () => {
  hsm = await provisionSimHsm(join(await tmp.make(), 'hsm'), 'anchor-key');
  process.env.SOFTHSM2_CONF = hsm.conf;
  lib = acquireLibrary(hsm.module);
  lib.initialize();
  session = lib.p.C_OpenSession(
    findTokenSlot(lib.p, hsm.tokenLabel),
    pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
  );
  loginUser(lib.p, session, hsm.pin);
});

afterAll(async () => {
  lib.p.C_CloseSession(session);
  releaseLibrary(lib);
  await tmp.removeAll();
});

describe('Pkcs11AnchorKey', () => {
  it('refuses a token without the key: anchor_key_missing', async () => {
    removePairs();
    const e = await refusal();
    expect(e).toBeInstanceOf(AnchorKeyError);
    expect((e as AnchorKeyError).reason).toBe('anchor_key_missing');
    expect((e as AnchorKeyError).code).toBe('hsm_key_missing');
  });

  it('refuses a key that could leave the token: anchor_key_unsafe', async () => {
    removePairs();
    addPair({ sensitive: false, extractable: true });
    const e = await refusal();
    expect(e).toBeInstanceOf(AnchorKeyError);
    expect((e as AnchorKeyError).reason).toBe('anchor_key_unsafe');
    expect((e as AnchorKeyError).code).toBe('hsm_key_unsafe');
  });

  it('refuses two keys under the label: anchor_key_ambiguous', async () => {
    removePairs();
    addPair({ sensitive: true, extractable: false });
    addPair({ sensitive: true, extractable: false });
    const e = await refusal();
    expect(e).toBeInstanceOf(AnchorKeyError);
    expect((e as AnchorKeyError).reason).toBe('anchor_key_ambiguous');
    expect((e as AnchorKeyError).code).toBe('hsm_key_unsafe');
  });

  it('creates the key when asked, and a finder signs with it', async () => {
    removePairs();
    const token = { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin };
    const creator = new Pkcs11AnchorKey(token, { create: true });
    const point = await creator.publicPoint();
    await creator.close();
    const finder = new Pkcs11AnchorKey(token);
    try {
      expect(await finder.publicPoint()).toEqual(point);
      const digest = createHash('sha256').update('batch').digest();
      const sig = await finder.signDigest(digest);
      const key = createPublicKey({
        key: {
          kty: 'EC',
          crv: 'P-256',
          x: point.subarray(1, 33).toString('base64url'),
          y: point.subarray(33).toString('base64url'),
        },
        format: 'jwk',
      });
      expect(verify('sha256', Buffer.from('batch'), { key, dsaEncoding: 'ieee-p1363' }, sig)).toBe(
        true,
      );
    } finally {
      await finder.close();
    }
  });

  it('latches a refused PIN: the same error, the PIN not presented again', async () => {
    const key = new Pkcs11AnchorKey({
      modulePath: hsm.module,
      tokenLabel: hsm.tokenLabel,
      pin: 'not-the-pin',
    });
    try {
      // Log the test's own session out, so that the token checks the PIN.
      lib.p.C_Logout(session);
      const first = await key.publicPoint().catch((e: unknown) => e);
      expect((first as { code?: string }).code).toBe('hsm_pin_incorrect');
      await expect(key.signDigest(Buffer.alloc(32))).rejects.toBe(first);
    } finally {
      await key.close();
      loginUser(lib.p, session, hsm.pin);
    }
  });
});
