/**
 * Quote against a real swtpm: a quote made by our addon verifies with node:crypto and with
 * tpm2_checkquote (AK public as PEM, PCR values from `tpm2_pcrread -o`), and its PCR
 * digest matches the PCR values we read.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { CreatedObject, PcrBankSelection } from '../../src/tpm/tpm.port.js';
import type { SimTpm } from '../rig/sim.js';
import {
  AK_ECC_P256,
  AK_RSA2048,
  SRK_ECC_P256,
  closeSimTpm,
  expectSignedAttest,
  openSimTpm,
  publicKeyOf,
  tpm2,
} from './helpers.js';

let sim: SimTpm;
let tpm: NativeTpm;
let dir: string;
const persistentSrk = 0x81000001;
const aks: Record<'ecc' | 'rsa', CreatedObject> = {} as Record<'ecc' | 'rsa', CreatedObject>;
const selection: PcrBankSelection[] = [{ bank: 'sha256', pcrs: [0, 1, 2, 15] }];

beforeAll(async () => {
  ({ sim, tpm } = await openSimTpm());
  dir = await mkdtemp(join(tmpdir(), 'grantor-quote-'));
  const srk = await tpm.createPrimary('owner', SRK_ECC_P256);
  try {
    aks.ecc = await tpm.create(srk.handle, AK_ECC_P256);
    aks.rsa = await tpm.create(srk.handle, AK_RSA2048);
    await tpm.makePersistent(srk.handle, persistentSrk);
  } finally {
    await tpm.flush(srk.handle);
  }
  await tpm.pcrExtend(15, [
    { hash: 'sha256', digest: createHash('sha256').update('boot').digest() },
  ]);
});

afterAll(async () => {
  await closeSimTpm({ sim, tpm });
  await rm(dir, { recursive: true, force: true });
});

/** TPMS_QUOTE_INFO after the TPMS_ATTEST header: the selection, then pcrDigest. */
function quotedDigest(rest: Buffer): Buffer {
  let o = 0;
  const count = rest.readUInt32BE(o);
  o += 4;
  for (let i = 0; i < count; i++) {
    o += 2;
    o += 1 + rest.readUInt8(o);
  }
  const size = rest.readUInt16BE(o);
  return rest.subarray(o + 2, o + 2 + size);
}

async function quoteWith(
  kind: 'ecc' | 'rsa',
  nonce: Buffer,
): Promise<{ attest: Buffer; signature: Buffer }> {
  return tpm.withLoaded(
    () => tpm.load(persistentSrk, aks[kind]),
    (ak) => tpm.quote(ak.handle, selection, nonce),
  );
}

describe('Quote', () => {
  for (const kind of ['ecc', 'rsa'] as const) {
    it(`${kind} AK: verifies with node:crypto and covers the PCR values we read`, async () => {
      const nonce = createHash('sha256').update(`nonce-${kind}`).digest();
      // TPM_ST_ATTEST_QUOTE
      const quoted = expectSignedAttest(
        await quoteWith(kind, nonce),
        aks[kind].public,
        0x8018,
        nonce,
      );
      const pcrs = await tpm.pcrRead(selection);
      const digest = createHash('sha256')
        .update(Buffer.concat(pcrs.values.map((v) => v.digest)))
        .digest();
      expect(quotedDigest(quoted).equals(digest)).toBe(true);
    });

    it(`${kind} AK: tpm2_checkquote accepts our quote, and refuses another nonce`, async () => {
      const nonce = createHash('sha256').update(`checkquote-${kind}`).digest();
      const { attest, signature } = await quoteWith(kind, nonce);
      const f = (n: string): string => join(dir, `${kind}-${n}`);
      await writeFile(f('quote.msg'), attest);
      await writeFile(f('quote.sig'), signature);
      await writeFile(
        f('ak.pem'),
        publicKeyOf(aks[kind].public).export({ type: 'spki', format: 'pem' }),
      );
      await tpm.close(); // swtpm serves one connection at a time
      try {
        await tpm2(sim.tcti, 'tpm2_pcrread', [
          '-o',
          f('pcrs.bin'),
          '-F',
          'serialized',
          'sha256:0,1,2,15',
        ]);
        const args = [
          '-u',
          f('ak.pem'),
          '-m',
          f('quote.msg'),
          '-s',
          f('quote.sig'),
          '-f',
          f('pcrs.bin'),
          '-g',
          'sha256',
        ];
        await tpm2(sim.tcti, 'tpm2_checkquote', [...args, '-q', nonce.toString('hex')]);
        const other = createHash('sha256').update('other').digest('hex');
        await expect(tpm2(sim.tcti, 'tpm2_checkquote', [...args, '-q', other])).rejects.toThrow();
      } finally {
        tpm = await NativeTpm.open(sim.tcti);
      }
    });
  }

  it('rejects qualifying data longer than a TPM2B_DATA (MU layer)', async () => {
    await expect(quoteWith('ecc', Buffer.alloc(100))).rejects.toMatchObject({
      code: 'tpm_error',
      layer: 'mu',
    });
  });

  it('rejects a quote by a key that is not loaded (TPM layer)', async () => {
    await expect(tpm.quote(0x80ffffff, selection, Buffer.alloc(8))).rejects.toMatchObject({
      code: 'tpm_error',
      layer: 'tpm',
    });
  });
});
