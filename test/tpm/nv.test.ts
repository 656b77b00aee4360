/**
 * NV indices against a real swtpm: ordinary, counter and extend indices defined with
 * caller-given attributes and auth; read, write (beyond one NV buffer), increment, extend,
 * read public and name, NV_Certify; the counter read back through tpm2_nvread.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { SimTpm } from '../rig/sim.js';
import {
  AK_ECC_P256,
  SRK_ECC_P256,
  closeSimTpm,
  expectSignedAttest,
  openSimTpm,
  tpm2,
  tpm2Raw,
} from './helpers.js';

const NV = {
  OWNERWRITE: 0x2,
  AUTHWRITE: 0x4,
  ORDINARY: 0x0 << 4,
  COUNTER: 0x1 << 4,
  EXTEND: 0x4 << 4,
  OWNERREAD: 0x20000,
  AUTHREAD: 0x40000,
  NO_DA: 0x2000000,
  WRITTEN: 0x20000000,
} as const;

const ORDINARY = 0x01500010;
const COUNTER = 0x01500011;
const EXTEND = 0x01500012;
const OWNER_ONLY = 0x01500013;
const auth = Buffer.from('index-auth');

/** Defines an index written and read by its own auth value (`auth`), outside DA protection. */
function defineWithAuth(index: number, type: number, dataSize: number): Promise<void> {
  const attributes = type | NV.AUTHWRITE | NV.AUTHREAD | NV.NO_DA;
  return tpm.nvDefine({ index, nameAlg: 'sha256', attributes, dataSize }, { auth });
}

let sim: SimTpm;
let tpm: NativeTpm;

beforeAll(async () => {
  ({ sim, tpm } = await openSimTpm());
});

afterAll(() => closeSimTpm({ sim, tpm }));

describe('NV indices', () => {
  it('defines an ordinary index, writes and reads more than one NV buffer, with its auth', async () => {
    await defineWithAuth(ORDINARY, NV.ORDINARY, 1200);
    const data = Buffer.from(Array.from({ length: 1200 }, (_, i) => (i * 7) & 0xff));
    await tpm.nvWrite(ORDINARY, data, { auth: { value: auth } });
    expect((await tpm.nvRead(ORDINARY, { auth: { value: auth } })).equals(data)).toBe(true);
    const part = await tpm.nvRead(ORDINARY, { size: 10, offset: 600, auth: { value: auth } });
    expect(part.equals(data.subarray(600, 610))).toBe(true);
  });

  it('refuses a read with the wrong auth value (TPM_RC_BAD_AUTH)', async () => {
    const err = await tpm
      .nvRead(ORDINARY, { size: 4, auth: { value: Buffer.from('wrong') } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm', command: 'NV_Read' });
    expect((err as TpmError).baseRc).toBe(0x0a2);
  });

  it('refuses to define an index twice (TPM_RC_NV_DEFINED)', async () => {
    const err = await tpm
      .nvDefine({
        index: ORDINARY,
        nameAlg: 'sha256',
        attributes: NV.AUTHWRITE | NV.AUTHREAD,
        dataSize: 8,
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm' });
    expect((err as TpmError).baseRc).toBe(0x14c);
  });

  it('refuses to define with a wrong owner auth', async () => {
    const err = await tpm
      .nvDefine(
        {
          index: 0x01500020,
          nameAlg: 'sha256',
          attributes: NV.AUTHWRITE | NV.AUTHREAD,
          dataSize: 8,
        },
        { hierarchyAuth: Buffer.from('not-the-owner') },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm', command: 'NV_DefineSpace' });
  });

  it('reads the public area; the name is nameAlg ‖ SHA-256(TPMS_NV_PUBLIC) and changes once written', async () => {
    const { public: pub, name } = await tpm.nvReadPublic(ORDINARY);
    expect(name.readUInt16BE(0)).toBe(0x000b);
    expect(name.subarray(2).equals(createHash('sha256').update(pub.subarray(2)).digest())).toBe(
      true,
    );
    const attrs = pub.readUInt32BE(2 + 4 + 2);
    expect(attrs & NV.WRITTEN).toBe(NV.WRITTEN);
  });

  it('owner-authorised index: write and read by the owner hierarchy', async () => {
    await tpm.nvDefine({
      index: OWNER_ONLY,
      nameAlg: 'sha256',
      attributes: NV.OWNERWRITE | NV.OWNERREAD,
      dataSize: 16,
    });
    await tpm.nvWrite(OWNER_ONLY, Buffer.alloc(16, 0xab), { auth: { by: 'owner' } });
    expect(
      (await tpm.nvRead(OWNER_ONLY, { auth: { by: 'owner' } })).equals(Buffer.alloc(16, 0xab)),
    ).toBe(true);
    await expect(tpm.nvRead(OWNER_ONLY)).rejects.toMatchObject({ code: 'tpm_error', layer: 'tpm' });
  });

  it('increments a counter, and tpm2_nvread reads the same value', async () => {
    await defineWithAuth(COUNTER, NV.COUNTER, 8);
    await tpm.nvIncrement(COUNTER, { auth: { value: auth } });
    const first = await tpm.nvReadCounter(COUNTER, { auth: { value: auth } });
    await tpm.nvIncrement(COUNTER, { auth: { value: auth } });
    await tpm.nvIncrement(COUNTER, { auth: { value: auth } });
    const third = await tpm.nvReadCounter(COUNTER, { auth: { value: auth } });
    expect(third).toBe(first + 2n);

    await tpm.close(); // swtpm serves one connection at a time
    try {
      const hexIndex = `0x${COUNTER.toString(16)}`;
      const raw = await tpm2Raw(sim.tcti, 'tpm2_nvread', [
        '-C',
        hexIndex,
        '-P',
        `hex:${auth.toString('hex')}`,
        '-s',
        '8',
        hexIndex,
      ]);
      expect(raw.readBigUInt64BE(0)).toBe(third);
    } finally {
      tpm = await NativeTpm.open(sim.tcti);
    }
  });

  it('extends an extend index: value = H(old ‖ data)', async () => {
    await defineWithAuth(EXTEND, NV.EXTEND, 32);
    await tpm.nvExtend(EXTEND, Buffer.from('batch-1'), { auth: { value: auth } });
    await tpm.nvExtend(EXTEND, Buffer.from('batch-2'), { auth: { value: auth } });
    const h = (...b: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(b)).digest();
    const expected = h(h(Buffer.alloc(32), Buffer.from('batch-1')), Buffer.from('batch-2'));
    expect((await tpm.nvRead(EXTEND, { auth: { value: auth } })).equals(expected)).toBe(true);
  });

  it('NV_Certify: an AK signs the counter contents with our qualifying data', async () => {
    const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
    try {
      const ak = await tpm.create(srk.handle, AK_ECC_P256);
      await tpm.withLoaded(
        () => tpm.load(srk.handle, ak),
        async (loaded) => {
          const nonce = Buffer.from('nv-certify-nonce');
          const signed = await tpm.nvCertify(loaded.handle, COUNTER, nonce, {
            auth: { value: auth },
          });
          // TPM_ST_ATTEST_NV; TPMS_NV_CERTIFY_INFO: indexName, offset, nvContents.
          const certified = expectSignedAttest(signed, ak.public, 0x8014, nonce);
          const nameLen = certified.readUInt16BE(0);
          expect(
            certified.subarray(2, 2 + nameLen).equals((await tpm.nvReadPublic(COUNTER)).name),
          ).toBe(true);
          const contents = certified.subarray(2 + nameLen + 2 + 2);
          expect(contents.readBigUInt64BE(0)).toBe(
            await tpm.nvReadCounter(COUNTER, { auth: { value: auth } }),
          );
        },
      );
    } finally {
      await tpm.flush(srk.handle);
    }
  });

  it('undefines the indices; reading one then fails with TPM_RC_HANDLE', async () => {
    for (const index of [ORDINARY, COUNTER, EXTEND, OWNER_ONLY]) await tpm.nvUndefine(index);
    const err = await tpm.nvRead(COUNTER, { size: 8 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm' });
    expect((err as TpmError).baseRc).toBe(0x08b);
  });

  it('rejects an index outside the NV range before calling the TPM', async () => {
    await expect(
      tpm.nvDefine({ index: 0x81000000, nameAlg: 'sha256', attributes: NV.AUTHREAD, dataSize: 8 }),
    ).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('left no transient object loaded', async () => {
    await tpm.close();
    expect((await tpm2(sim.tcti, 'tpm2_getcap', ['handles-transient'])).trim()).toBe('');
    tpm = await NativeTpm.open(sim.tcti);
  });
});
