/**
 * The adapter's lifecycle and simple commands against a real swtpm: startup, self-test,
 * GetRandom, ReadClock, PCR read/extend (compared with tpm2_pcrread), queueing, close,
 * and the structured errors.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmError, TpmUnavailableError } from '../../src/tpm/errors.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { freePortPair, type SimTpm } from '../rig/sim.js';
import { closeSimTpm, openSimTpm, tpm2 } from './helpers.js';

let sim: SimTpm;
let tpm: NativeTpm;

beforeAll(async () => {
  ({ sim, tpm } = await openSimTpm());
});

afterAll(() => closeSimTpm({ sim, tpm }));

describe('NativeTpm basics', () => {
  it('starts up (already started is fine) and self-tests', async () => {
    await tpm.startup();
    await tpm.selfTest(true);
    await tpm.selfTest(false);
  });

  it('returns the requested number of random bytes', async () => {
    const a = await tpm.getRandom(32);
    const b = await tpm.getRandom(32);
    expect(a).toHaveLength(32);
    expect(b).toHaveLength(32);
    expect(a.equals(b)).toBe(false);
    expect(await tpm.getRandom(0)).toHaveLength(0);
  });

  it('rejects an out-of-range random size before calling the TPM', async () => {
    await expect(tpm.getRandom(65)).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('serialises 20 concurrent calls on one context', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => tpm.getRandom(i + 1)));
    expect(results.map((r) => r.length)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('reads the clock, which does not go backwards', async () => {
    const a = await tpm.readClock();
    await new Promise((r) => setTimeout(r, 20));
    const b = await tpm.readClock();
    expect(b.clock >= a.clock).toBe(true);
    expect(b.clock).toBeGreaterThan(0n);
    expect(b.resetCount).toBe(a.resetCount);
    expect(typeof b.safe).toBe('boolean');
  });

  it('reads all 24 PCRs of two banks in one snapshot (more than 8 per TPM call)', async () => {
    const r = await tpm.pcrRead([
      { bank: 'sha256', pcrs: Array.from({ length: 24 }, (_, i) => i) },
      { bank: 'sha1', pcrs: [0, 1, 23] },
    ]);
    expect(r.values).toHaveLength(27);
    expect(r.values.slice(0, 24).map((v) => v.pcr)).toEqual(
      Array.from({ length: 24 }, (_, i) => i),
    );
    expect(r.values[0]).toMatchObject({ bank: 'sha256', pcr: 0 });
    expect(r.values[24]).toMatchObject({ bank: 'sha1', pcr: 0 });
    expect(r.values[0]?.digest).toHaveLength(32);
    expect(r.values[24]?.digest).toHaveLength(20);
  });

  it('rejects a PCR bank the TPM does not have', async () => {
    await expect(tpm.pcrRead([{ bank: 'sha512', pcrs: [0] }])).rejects.toMatchObject({
      code: 'tpm_error',
    });
  });

  it('rejects a PCR index out of range', async () => {
    await expect(tpm.pcrRead([{ bank: 'sha256', pcrs: [32] }])).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(tpm.pcrExtend(40, [])).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('extends a PCR in two banks, and tpm2_pcrread agrees', async () => {
    const before = await tpm.pcrRead([
      { bank: 'sha256', pcrs: [15] },
      { bank: 'sha1', pcrs: [15] },
    ]);
    const d256 = createHash('sha256').update('grantor').digest();
    const d1 = createHash('sha1').update('grantor').digest();
    await tpm.pcrExtend(15, [
      { hash: 'sha256', digest: d256 },
      { hash: 'sha1', digest: d1 },
    ]);
    const after = await tpm.pcrRead([
      { bank: 'sha256', pcrs: [15] },
      { bank: 'sha1', pcrs: [15] },
    ]);
    const expect256 = createHash('sha256')
      .update(Buffer.concat([before.values[0]!.digest, d256]))
      .digest();
    const expect1 = createHash('sha1')
      .update(Buffer.concat([before.values[1]!.digest, d1]))
      .digest();
    expect(after.values[0]!.digest.equals(expect256)).toBe(true);
    expect(after.values[1]!.digest.equals(expect1)).toBe(true);
    expect(after.updateCounter).toBeGreaterThan(before.updateCounter);

    // swtpm serves one connection at a time: let tpm2-tools in, then reconnect.
    await tpm.close();
    const out = await tpm2(sim.tcti, 'tpm2_pcrread', ['sha256:15']);
    expect(out.toLowerCase()).toContain(expect256.toString('hex'));
    tpm = await NativeTpm.open(sim.tcti);
  });

  it('rejects a digest of the wrong size for its bank', async () => {
    await expect(
      tpm.pcrExtend(15, [{ hash: 'sha256', digest: new Uint8Array(20) }]),
    ).rejects.toMatchObject({
      code: 'bad_request',
    });
  });

  it('fails with tpm_unavailable when nothing listens on the port', async () => {
    const port = await freePortPair();
    const err = await NativeTpm.open(`swtpm:host=127.0.0.1,port=${port}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmUnavailableError);
    expect(err).toMatchObject({ code: 'tpm_unavailable', layer: 'tcti' });
    expect((err as TpmUnavailableError).rc).toBeGreaterThan(0);
  });

  it('a lazy adapter connects on first use, and reports tpm_unavailable while nothing listens', async () => {
    const port = await freePortPair();
    const down = NativeTpm.lazy(`swtpm:host=127.0.0.1,port=${port}`);
    await expect(down.getRandom(4)).rejects.toMatchObject({
      code: 'tpm_unavailable',
      layer: 'tcti',
    });
    await down.close();
    await tpm.close(); // swtpm serves one connection at a time
    const up = NativeTpm.lazy(sim.tcti);
    expect(await up.getRandom(4)).toHaveLength(4);
    await up.close();
    tpm = await NativeTpm.open(sim.tcti);
  });

  it('fails with tpm_error (TPM layer, TPM_RC_HANDLE) for an undefined NV index', async () => {
    const err = await tpm.nvReadPublic(0x01500aaa).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect(err).toMatchObject({ code: 'tpm_error', layer: 'tpm', command: 'NV_ReadPublic' });
    expect((err as TpmError).baseRc).toBe(0x08b);
    expect((err as TpmError).decoded).toMatch(/handle/i);
  });

  it('turns a lost connection into tpm_unavailable and reconnects once the TPM is back', async () => {
    await sim.stop();
    await expect(tpm.getRandom(8)).rejects.toMatchObject({ code: 'tpm_unavailable' });
    await expect(tpm.getRandom(8)).rejects.toMatchObject({ code: 'tpm_unavailable' });
    await sim.restart();
    expect(await tpm.getRandom(8)).toHaveLength(8);
  });

  it('close() is idempotent and rejects queued and later calls', async () => {
    const other = await openAfterClosingMain();
    const running = other.getRandom(16);
    const queued = [other.getRandom(16), other.readClock()].map((q) => q.catch((e: unknown) => e));
    const closing = other.close();
    const closingAgain = other.close();
    expect(closingAgain).toBe(closing);
    expect(await running).toHaveLength(16);
    for (const q of queued) {
      expect(await q).toMatchObject({ code: 'tpm_unavailable', name: 'TpmClosedError' });
    }
    await closing;
    await other.close();
    expect(other.closed).toBe(true);
    await expect(other.getRandom(4)).rejects.toMatchObject({
      code: 'tpm_unavailable',
      name: 'TpmClosedError',
    });
    tpm = await NativeTpm.open(sim.tcti);
  });
});

async function openAfterClosingMain(): Promise<NativeTpm> {
  await tpm.close();
  return NativeTpm.open(sim.tcti);
}
