/**
 * Test-side tools that talk to the SoftHSM2 token directly (pkcs11js, bypassing the
 * adapter): read attributes, plant keys the adapter must refuse, convert signatures, and
 * run openssl. Never finalises the module (the adapter in the same process shares it).
 */
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import type { PublicJwk } from '../../src/keys/signer.port.js';
import type { SimHsm } from '../rig/sim.js';

const run = promisify(execFile);

/**
 * A plain pkcs11js session on the rig token (read-write, logged in), beside whatever the
 * adapter has open: the module is initialised once per process, login is per application.
 */
export function openRawSession(hsm: SimHsm): {
  readonly p: pkcs11js.PKCS11;
  readonly session: Buffer;
  readonly close: () => void;
} {
  const p = new pkcs11js.PKCS11();
  p.load(hsm.module);
  try {
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (
      !(e instanceof pkcs11js.Pkcs11Error) ||
      e.code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED
    )
      throw e;
  }
  const slot = p
    .C_GetSlotList(true)
    .find((s) => p.C_GetTokenInfo(s).label.trim() === hsm.tokenLabel);
  if (slot === undefined) throw new Error(`token ${hsm.tokenLabel} not found`);
  const session = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_Login(session, pkcs11js.CKU_USER, hsm.pin);
  } catch (e) {
    if (!(e instanceof pkcs11js.Pkcs11Error) || e.code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
      p.C_CloseSession(session);
      throw e;
    }
  }
  return {
    p,
    session,
    close: () => {
      p.C_CloseSession(session);
    },
  };
}

export function rawSession<T>(hsm: SimHsm, fn: (p: pkcs11js.PKCS11, session: Buffer) => T): T {
  const raw = openRawSession(hsm);
  try {
    return fn(raw.p, raw.session);
  } finally {
    raw.close();
  }
}

export function findPrivate(p: pkcs11js.PKCS11, session: Buffer, hsmId: string): Buffer {
  p.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_ID, value: Buffer.from(hsmId, 'hex') },
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
  ]);
  const [h] = p.C_FindObjects(session, 2);
  p.C_FindObjectsFinal(session);
  if (h === undefined) throw new Error('private key not found');
  return h;
}

/** Plant a P-256 key pair under `hsmId` with the given private-key protection. */
export function plantEcKey(
  hsm: SimHsm,
  hsmId: string,
  protection: { sensitive: boolean; extractable: boolean },
): void {
  rawSession(hsm, (p, session) => {
    const id = Buffer.from(hsmId, 'hex');
    p.C_GenerateKeyPair(
      session,
      { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
      [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') },
        { type: pkcs11js.CKA_VERIFY, value: true },
      ],
      [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_ID, value: id },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: protection.sensitive },
        { type: pkcs11js.CKA_EXTRACTABLE, value: protection.extractable },
      ],
    );
  });
}

/** DER-encode a JOSE r‖s ECDSA signature (for openssl). */
export function rsToDer(sig: Uint8Array): Buffer {
  const int = (b: Uint8Array): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = Buffer.from(b.subarray(i));
    if ((v[0] ?? 0) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02, v.length]), v]);
  };
  const body = Buffer.concat([int(sig.subarray(0, 32)), int(sig.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

export function pem(jwk: PublicJwk): string {
  return createPublicKey({ key: { ...jwk }, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
}

/** Run openssl in a temp folder holding the given files; returns stdout (throws on failure). */
export async function openssl(
  files: Record<string, string | Uint8Array>,
  args: string[],
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-openssl-'));
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
    const { stdout } = await run('openssl', args, { cwd: dir });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
