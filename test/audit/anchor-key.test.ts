/**
 * The anchor write key on a real SoftHSM2 token: it is found only when exactly one safe key
 * pair carries its label, a refused PIN is never presented again, and once its signing
 * thread listens the event loop no longer signs.
 */
import { createPublicKey, createHash, verify } from 'node:crypto';
import { join } from 'node:path';
import pkcs11js, { type PKCS11 } from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { Pkcs11AnchorKey } from '../../src/audit/anchor-key.pkcs11.js';
import { ANCHOR_KEY_LABEL } from '../../src/audit/anchor-key.port.js';
import { P256_PARAMS, type Handle } from '../../src/keys/key-inspection.pkcs11.js';
import { acquireLibrary, releaseLibrary, type Library } from '../../src/keys/library.pkcs11.js';
import { findTokenSlot, loginUser } from '../../src/keys/token.pkcs11.js';
import { provisionSimHsm, type SimHsm } from '../rig/sim.js';
import { tempDirs } from '../../src/shared/testing/temp-dirs.js';
import { AnchorKeyError } from '../../src/audit/errors.js';
import { SignThread } from '../../src/keys/signer.thread.pkcs11.js';
import { HsmDeadlineExceededError } from '../../src/keys/errors.js';

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

/** The anchor key's public point as a Node key. */
function publicKey(point: Buffer): ReturnType<typeof createPublicKey> {
  return createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
}

/** Whether `sig` (P1363) is the key's signature of SHA-256(`text`). */
function signs(point: Buffer, text: string, sig: Buffer): boolean {
  return verify(
    'sha256',
    Buffer.from(text),
    { key: publicKey(point), dsaEncoding: 'ieee-p1363' },
    sig,
  );
}

/** The event loop's own C_Sign calls, as a spy sees them. */
type LoopSigns = MockInstance<PKCS11['C_Sign']>;

/** One digest signed through signDigests (the key's only sign). */
async function signOne(key: Pkcs11AnchorKey, digest: Buffer): Promise<Buffer> {
  const [signature] = await key.signDigests([digest]);
  if (signature === undefined) throw new Error('signDigests answered no signature');
  return signature;
}

/**
 * `fn` with a fresh anchor key (created, its public point read) and a spy on the event
 * loop's C_Sign calls (the module instance is shared in the process, library.pkcs11.ts;
 * the key's thread has its own); the key is closed and the spy removed afterwards.
 */
async function withNewKey(
  fn: (key: Pkcs11AnchorKey, onLoop: LoopSigns, point: Buffer) => Promise<void>,
  options: { signThread: boolean; threadDeadlineMs?: number } = { signThread: true },
): Promise<void> {
  removePairs();
  const token = { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin };
  const key = new Pkcs11AnchorKey(token, { create: true, ...options });
  const onLoop = vi.spyOn(lib.p, 'C_Sign');
  try {
    await fn(key, onLoop, await key.publicPoint());
  } finally {
    onLoop.mockRestore();
    await key.close();
  }
}

/**
 * Signs until a sign leaves the event loop's C_Sign count as it was: the key's thread then
 * listens. The first sign always runs on the event loop (the thread starts with it).
 * Returns the event loop's count.
 */
async function untilThreaded(key: Pkcs11AnchorKey, onLoop: LoopSigns): Promise<number> {
  const until = Date.now() + 60_000;
  let calls = onLoop.mock.calls.length;
  for (;;) {
    await signOne(key, createHash('sha256').update('probe').digest());
    if (calls > 0 && onLoop.mock.calls.length === calls) return calls;
    calls = onLoop.mock.calls.length;
    if (Date.now() > until) throw new Error('the anchor key never signed off the event loop');
    await new Promise((r) => setTimeout(r, 50));
  }
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
      expect(signs(point, 'batch', await signOne(finder, digest))).toBe(true);
    } finally {
      await finder.close();
    }
  });

  it('signs on its thread once the thread listens, never on the event loop', async () => {
    await withNewKey(async (key, onLoop, point) => {
      const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
      // The first signs run on the event loop while the thread boots (seconds under tsx).
      const first = await signOne(key, digest('first'));
      expect(signs(point, 'first', first)).toBe(true);
      expect(onLoop).toHaveBeenCalled();
      const calls = await untilThreaded(key, onLoop);
      const texts = Array.from({ length: 12 }, (_, i) => `batch ${i}`);
      const sigs = await Promise.all(texts.map((t) => signOne(key, digest(t))));
      expect(onLoop.mock.calls.length).toBe(calls);
      texts.forEach((t, i) => {
        expect(signs(point, t, sigs[i] as Buffer)).toBe(true);
      });
      // Each signature is its own digest's, not another's of the same batch of calls.
      expect(signs(point, texts[0] as string, sigs[1] as Buffer)).toBe(false);

      // close() waits for a sign in flight on the thread rather than pulling the module
      // from under it.
      const inFlight = signOne(key, digest('last'));
      const closing = key.close();
      expect(signs(point, 'last', await inFlight)).toBe(true);
      await closing;
    });
  });

  it("signs a list of digests in one hand-off to its thread, each signature its own digest's, in order", async () => {
    await withNewKey(async (key, onLoop, point) => {
      const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
      const calls = await untilThreaded(key, onLoop);
      const handOffs = vi.spyOn(SignThread.prototype, 'run');
      try {
        const texts = ['extend', 'increment', 'third'];
        const sigs = await key.signDigests(texts.map(digest));
        expect(handOffs).toHaveBeenCalledTimes(1);
        expect(handOffs.mock.calls[0]?.[1]).toHaveLength(3);
        expect(onLoop.mock.calls.length).toBe(calls);
        expect(sigs).toHaveLength(3);
        texts.forEach((t, i) => {
          expect(signs(point, t, sigs[i] as Buffer)).toBe(true);
        });
        expect(signs(point, 'extend', sigs[1] as Buffer)).toBe(false);
        expect(await key.signDigests([])).toEqual([]);
        expect(handOffs).toHaveBeenCalledTimes(1);
      } finally {
        handOffs.mockRestore();
      }
    });
  });

  it('signs a list of digests on the event loop before the thread listens', async () => {
    await withNewKey(
      async (key, onLoop, point) => {
        const texts = ['a', 'b'];
        const sigs = await key.signDigests(
          texts.map((t) => createHash('sha256').update(t).digest()),
        );
        expect(onLoop).toHaveBeenCalledTimes(2);
        texts.forEach((t, i) => {
          expect(signs(point, t, sigs[i] as Buffer)).toBe(true);
        });
      },
      { signThread: false },
    );
  });

  it('signs on the event loop only when it is not asked for a thread (one-shot commands)', async () => {
    await withNewKey(
      async (key, onLoop, point) => {
        // Longer than a thread takes to listen in the test above (well under a second).
        for (let i = 0; i < 30; i++) {
          const sig = await signOne(key, createHash('sha256').update(`one-shot ${i}`).digest());
          expect(signs(point, `one-shot ${i}`, sig)).toBe(true);
          expect(onLoop).toHaveBeenCalledTimes(i + 1);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      { signThread: false },
    );
  });

  it('fails a sign its thread skipped after the deadline: hsm_unavailable (deadline), not retried, not signed on the event loop', async () => {
    // A deadline already past when the thread takes the batch: the thread skips the items.
    await withNewKey(
      async (key, onLoop) => {
        const digest = createHash('sha256').update('late').digest();
        // The signs before the thread listens run on the event loop, where no deadline
        // applies; the first one past that is the thread's.
        const until = Date.now() + 60_000;
        const handOffs = vi.spyOn(SignThread.prototype, 'run');
        try {
          for (;;) {
            const calls = onLoop.mock.calls.length;
            const refused = await key.signDigests([digest, digest]).then(
              () => undefined,
              (e: unknown) => e,
            );
            if (refused !== undefined) {
              expect(refused).toBeInstanceOf(HsmDeadlineExceededError);
              expect(refused).toMatchObject({
                code: 'hsm_unavailable',
                details: { reason: 'deadline', deadlineMs: -1 },
              });
              // One hand-off (a skip is no PKCS#11 fault to re-open a session for), and
              // no fallback to the event loop.
              expect(handOffs).toHaveBeenCalledTimes(1);
              expect(onLoop.mock.calls.length).toBe(calls);
              break;
            }
            expect(handOffs).not.toHaveBeenCalled();
            expect(onLoop.mock.calls.length).toBe(calls + 2);
            if (Date.now() > until)
              throw new Error('the anchor key never signed off the event loop');
            await new Promise((r) => setTimeout(r, 50));
          }
        } finally {
          handOffs.mockRestore();
        }
      },
      { signThread: true, threadDeadlineMs: -1 },
    );
  });

  it('recovers from a session lost under a sign on its thread, as on the event loop', async () => {
    try {
      await withNewKey(async (key, onLoop, point) => {
        const calls = await untilThreaded(key, onLoop);
        // Every session of the token closed behind the key (as a token reset would): the
        // thread's C_SignInit fails with the module's CKR_SESSION_HANDLE_INVALID, which
        // must reach the key as a PKCS#11 fault, so that it re-opens a session and signs
        // once more.
        lib.p.C_CloseAllSessions(findTokenSlot(lib.p, hsm.tokenLabel));
        const digest = createHash('sha256').update('after').digest();
        expect(signs(point, 'after', await signOne(key, digest))).toBe(true);
        // The retry was the thread's too.
        expect(onLoop.mock.calls.length).toBe(calls);
      });
    } finally {
      session = lib.p.C_OpenSession(
        findTokenSlot(lib.p, hsm.tokenLabel),
        pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
      );
      loginUser(lib.p, session, hsm.pin);
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
      await expect(signOne(key, Buffer.alloc(32))).rejects.toBe(first);
    } finally {
      await key.close();
      loginUser(lib.p, session, hsm.pin);
    }
  });
});
