/**
 * ActivateCredential against a real swtpm: credentials made offline by
 * `tpm2_makecredential -T none` from an EK public and an AK name are recovered through the
 * RSA-2048 EK (SHA-256 policy session), a P-384 EK with PolicyA (SHA-384 policy session)
 * and the high-range P-384 EK (userWithAuth).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EK_HANDLES } from '../../src/tpm/templates.js';
import { TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { CreatedObject } from '../../src/tpm/tpm.port.js';
import type { SimTpm } from '../rig/sim.js';
import { AK_ECC_P256, EK_ECC_P384_POLICY_A, closeSimTpm, openSimTpm, tpm2 } from './helpers.js';

let sim: SimTpm;
let tpm: NativeTpm;
let dir: string;
let ak: CreatedObject;
const EK_RSA = EK_HANDLES.rsa2048.persistent;
const EK_P384 = EK_HANDLES['ecc-p384'].persistent;

beforeAll(async () => {
  ({ sim, tpm } = await openSimTpm());
  dir = await mkdtemp(join(tmpdir(), 'grantor-cred-'));
  ak = await tpm.create(EK_RSA, AK_ECC_P256, { parentAuth: { ekPolicy: true } });
});

afterAll(async () => {
  await closeSimTpm({ sim, tpm });
  await rm(dir, { recursive: true, force: true });
});

/** tpm2_makecredential -T none; returns the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET. */
async function makeCredential(
  ekPublic: Buffer,
  akName: Buffer,
  secret: Buffer,
  tag: string,
): Promise<{ blob: Buffer; encryptedSecret: Buffer }> {
  const f = (n: string): string => join(dir, `${tag}-${n}`);
  await writeFile(f('ek.pub'), ekPublic);
  await writeFile(f('secret'), secret);
  await tpm2('', 'tpm2_makecredential', [
    '-T',
    'none',
    '-u',
    f('ek.pub'),
    '-s',
    f('secret'),
    '-n',
    akName.toString('hex'),
    '-o',
    f('cred'),
  ]);
  const out = await readFile(f('cred'));
  // tpm2-tools file header: magic 0xBADCC0DE, version 1; then the two TPM2Bs.
  expect(out.readUInt32BE(0)).toBe(0xbadcc0de);
  const blobEnd = 8 + 2 + out.readUInt16BE(8);
  return { blob: out.subarray(8, blobEnd), encryptedSecret: out.subarray(blobEnd) };
}

async function activateWith(
  ekHandle: number,
  tag: string,
  tamper = false,
): Promise<{ secret: Buffer; got: Buffer }> {
  const secret = randomBytes(32);
  return tpm.withLoaded(
    () => tpm.load(EK_RSA, ak, { parentAuth: { ekPolicy: true } }),
    async (loaded) => {
      const ekPublic = (await tpm.readPublic(ekHandle)).public;
      const { blob, encryptedSecret } = await makeCredential(ekPublic, loaded.name, secret, tag);
      if (tamper) blob[blob.length - 1]! ^= 1;
      const got = await tpm.activateCredential(loaded.handle, ekHandle, blob, encryptedSecret);
      return { secret, got };
    },
  );
}

describe('ActivateCredential', () => {
  it('recovers the secret through the RSA-2048 EK (SHA-256 EK policy session)', async () => {
    const { secret, got } = await activateWith(EK_RSA, 'rsa');
    expect(got.equals(secret)).toBe(true);
  });

  it('recovers the secret through the high-range P-384 EK (userWithAuth)', async () => {
    const { secret, got } = await activateWith(EK_P384, 'p384');
    expect(got.equals(secret)).toBe(true);
  });

  it('recovers the secret through a P-384 PolicyA EK (SHA-384 EK policy session)', async () => {
    const ek = await tpm.createPrimary('endorsement', EK_ECC_P384_POLICY_A);
    try {
      const { secret, got } = await activateWith(ek.handle, 'p384a');
      expect(got.equals(secret)).toBe(true);
    } finally {
      await tpm.flush(ek.handle);
    }
  });

  it('fails in the TPM for a tampered credential blob', async () => {
    const err = await activateWith(EK_RSA, 'tampered', true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm', command: 'ActivateCredential' });
  });

  it('fails when the RSA EK is used without its policy', async () => {
    const err = await tpm
      .withLoaded(
        () => tpm.load(EK_RSA, ak, { parentAuth: { ekPolicy: true } }),
        async (loaded) => {
          const ekPublic = (await tpm.readPublic(EK_RSA)).public;
          const { blob, encryptedSecret } = await makeCredential(
            ekPublic,
            loaded.name,
            randomBytes(16),
            'nopolicy',
          );
          return tpm.activateCredential(loaded.handle, EK_RSA, blob, encryptedSecret, {
            ekAuth: {},
          });
        },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm' });
  });

  it('rejects a credential blob that is not a TPM2B_ID_OBJECT (MU layer)', async () => {
    await expect(
      tpm.activateCredential(0x80000000, EK_RSA, Buffer.from([0, 9, 1]), Buffer.alloc(2), {
        ekAuth: {},
      }),
    ).rejects.toMatchObject({
      code: 'tpm_error',
      layer: 'mu',
    });
  });

  it('left no transient object loaded', async () => {
    await tpm.close();
    expect((await tpm2(sim.tcti, 'tpm2_getcap', ['handles-transient'])).trim()).toBe('');
    tpm = await NativeTpm.open(sim.tcti);
  });
});
