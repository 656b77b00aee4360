/**
 * PIN handling of the PKCS#11 adapter with a scripted module: SoftHSM2 never locks a PIN
 * and keeps no retry counter, so a locked PIN, a PIN on its final try and the number of
 * login attempts can only be observed this way. (The real wrong-PIN path runs against
 * SoftHSM2 in test/keys/fault.test.ts.) The scripted module also holds one Ed25519 key
 * (signed with node:crypto), so a sign can reach a signing thread: the thread loads the
 * module by its path, which does not exist, and must fail typed.
 */
import type pkcs11Default from 'pkcs11js';
import { beforeEach, describe, expect, it, vi } from 'vitest';

type Pkcs11Module = typeof pkcs11Default;

const script = vi.hoisted(() => ({
  logins: 0,
  loginRv: undefined as string | undefined,
  tokenFlags: 0,
  initializes: 0,
  finalizes: 0,
}));

vi.mock('pkcs11js', async (importOriginal) => {
  const real = (await importOriginal<{ default: Pkcs11Module }>()).default;
  const { generateKeyPairSync, sign } = await import('node:crypto');
  const ed = generateKeyPairSync('ed25519');
  const edPoint = Buffer.from(ed.publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
  const PRIV = Buffer.from([7]);
  const PUB = Buffer.from([8]);
  const keyType = Buffer.alloc(8);
  keyType.writeUInt32LE(0x40); // CKK_EC_EDWARDS
  const privAttrs = new Map<number, Buffer>([
    [real.CKA_SENSITIVE, Buffer.from([1])],
    [real.CKA_EXTRACTABLE, Buffer.from([0])],
    [real.CKA_NEVER_EXTRACTABLE, Buffer.from([1])],
    [real.CKA_ALWAYS_SENSITIVE, Buffer.from([1])],
    [real.CKA_TOKEN, Buffer.from([1])],
    [real.CKA_KEY_TYPE, keyType],
    [real.CKA_LABEL, Buffer.from('scripted-ed')],
  ]);
  const pubAttrs = new Map<number, Buffer>([
    [real.CKA_EC_POINT, Buffer.concat([Buffer.from([0x04, 0x20]), edPoint])],
  ]);
  let found: Buffer[] = [];
  class ScriptedPkcs11 {
    load(): void {}
    C_Initialize(): void {
      script.initializes += 1;
    }
    C_Finalize(): void {
      script.finalizes += 1;
    }
    C_FindObjectsInit(_session: Buffer, template: { type: number; value?: unknown }[]): void {
      const cls = template.find((a) => a.type === real.CKA_CLASS)?.value;
      found =
        cls === real.CKO_PRIVATE_KEY ? [PRIV] : cls === real.CKO_PUBLIC_KEY ? [PUB] : [PRIV, PUB];
    }
    C_FindObjects(): Buffer[] {
      return found;
    }
    C_FindObjectsFinal(): void {}
    C_GetAttributeValue(
      _session: Buffer,
      handle: Buffer,
      template: { type: number }[],
    ): { type: number; value: Buffer | undefined }[] {
      const attrs = handle.equals(PRIV) ? privAttrs : pubAttrs;
      return template.map((a) => ({ type: a.type, value: attrs.get(a.type) }));
    }
    C_SignInit(): void {}
    C_Sign(_session: Buffer, input: Buffer): Buffer {
      return sign(null, input, ed.privateKey);
    }
    C_GetSessionInfo(): { state: number } {
      return { state: 3 };
    }
    C_GetSlotList(): Buffer[] {
      return [Buffer.from([1])];
    }
    C_GetTokenInfo(): { label: string; flags: number } {
      return { label: 'tok                             ', flags: script.tokenFlags };
    }
    C_OpenSession(): Buffer {
      return Buffer.from([2]);
    }
    C_CloseSession(): void {}
    C_Login(): void {
      script.logins += 1;
      const rv = script.loginRv;
      if (rv !== undefined) {
        const code = (real as unknown as Record<string, number>)[rv] ?? 0;
        throw new real.Pkcs11Error(`${rv}:${code}`, code);
      }
    }
  }
  return { default: { ...real, PKCS11: ScriptedPkcs11 } };
});

const { Pkcs11Signer } = await import('./signer.pkcs11.js');
type Pkcs11SignerConfig = ConstructorParameters<typeof Pkcs11Signer>[0];
const pkcs11js = (await import('pkcs11js')).default;

const PIN = 'secret-pin-4711';

function signer(over: Partial<Pkcs11SignerConfig> = {}): InstanceType<typeof Pkcs11Signer> {
  return new Pkcs11Signer({
    modulePath: '/scripted.so',
    tokenLabel: 'tok',
    pin: PIN,
    sessionPoolSize: 2,
    signDeadlineMs: 1000,
    recoveryBackoffMs: 0,
    ...over,
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    const err = e as Error & { code?: string; details?: unknown };
    // A PIN never appears in an error.
    expect(`${err.message} ${err.stack ?? ''} ${JSON.stringify(err.details)}`).not.toContain(PIN);
    return String(err.code);
  }
}

beforeEach(() => {
  script.logins = 0;
  script.loginRv = undefined;
  script.tokenFlags = 0;
});

// open() waits for the signing threads, which boot through tsx here: seconds on a busy box.
describe('signing threads', { timeout: 30_000 }, () => {
  it('a sign its thread cannot make fails hsm_unavailable, and the next call re-initialises the module', async () => {
    const s = signer();
    await s.open();
    try {
      const key = await s.load('ab', 'EdDSA');
      const before = { ...script };
      // The thread loads '/scripted.so' itself: there is no such module.
      expect(await codeOf(s.sign(key.hsmId, new Uint8Array(8)))).toBe('hsm_unavailable');
      await expect(s.sign(key.hsmId, new Uint8Array(8))).rejects.toMatchObject({
        code: 'hsm_unavailable',
        details: { rv: undefined },
      });
      // The fault marked the connection broken: it is finalised, initialised and logged in anew.
      await expect(s.ready()).resolves.toEqual({ ok: true });
      expect(script.finalizes - before.finalizes).toBeGreaterThanOrEqual(1);
      expect(script.initializes - before.initializes).toBe(script.finalizes - before.finalizes);
      expect(script.logins - before.logins).toBe(script.finalizes - before.finalizes);
    } finally {
      await s.close();
    }
  });
});

describe('PIN handling', { timeout: 30_000 }, () => {
  it.each([
    ['CKR_PIN_INCORRECT', 'hsm_pin_incorrect'],
    ['CKR_PIN_LEN_RANGE', 'hsm_pin_incorrect'],
    ['CKR_PIN_LOCKED', 'hsm_pin_locked'],
  ])('%s is reported as %s once, and login is never tried again', async (rv, code) => {
    script.loginRv = rv;
    const s = signer();
    expect(await codeOf(s.open())).toBe(code);
    expect(await codeOf(s.load('aa', 'ES256'))).toBe(code);
    expect(await codeOf(s.generate('ES256', 'x'))).toBe(code);
    expect(await codeOf(s.destroy('aa'))).toBe(code);
    await expect(s.ready()).resolves.toEqual({ ok: false, reason: code });
    // Even once the token would accept it, this instance does not present the PIN again.
    script.loginRv = undefined;
    expect(await codeOf(s.load('aa', 'ES256'))).toBe(code);
    expect(script.logins).toBe(1);
    await s.close();
  });

  it.each([
    ['whose user PIN is locked', 0x40000, 'hsm_pin_locked'],
    ['on its final try (a wrong PIN would lock it)', 0x20000, 'hsm_pin_incorrect'],
  ] as const)('does not present the PIN to a token %s', async (_why, flags, code) => {
    script.tokenFlags = flags;
    const s = signer();
    expect(await codeOf(s.open())).toBe(code);
    expect(script.logins).toBe(0);
    await s.close();
  });

  it('accepts a session that is already logged in', async () => {
    script.loginRv = 'CKR_USER_ALREADY_LOGGED_IN';
    const s = signer();
    await s.open();
    expect(script.logins).toBe(1);
    await s.close();
  });

  it('refuses an invalid pool size', () => {
    expect(() => signer({ sessionPoolSize: 0 })).toThrow(RangeError);
  });

  it.each([0, 1.5, Number.NaN])('refuses %s signing threads', (signThreads) => {
    expect(() => signer({ signThreads })).toThrow(RangeError);
  });

  it('uses at most one signing thread per pooled session', () => {
    const s = signer({ signThreads: 8 });
    expect(s.signThreadCount).toBe(2);
  });

  it('reports an unknown key before touching the HSM (hsm_key_missing)', async () => {
    const s = signer();
    await s.open();
    expect(await codeOf(s.sign('bb', new Uint8Array(1)))).toBe('hsm_key_missing');
    await s.close();
    expect(pkcs11js.CKR_PIN_LOCKED).toBeTypeOf('number');
  });
});
