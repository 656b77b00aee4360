/**
 * A TPM without a resource manager (swtpm, /dev/tpm0) keeps the transient objects of a
 * process that died without flushing them: the adapter flushes them when the TPM answers
 * that its slots are full, and spares the objects it holds itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { SRK_ECC_P256 } from './helpers.js';

let sim: SimTpm;

beforeAll(async () => {
  sim = await startSimTpm();
});

afterAll(async () => {
  await sim.destroy();
});

/** A process that loads `n` objects and goes away without flushing them. */
async function leaveStale(n: number): Promise<void> {
  const dead = await NativeTpm.open(sim.tcti);
  for (let i = 0; i < n; i++) await dead.createPrimary('owner', SRK_ECC_P256);
  await dead.close();
}

describe('stale transient objects', () => {
  it('CreatePrimary flushes a dead process’s objects from full slots and spares its own', async () => {
    await leaveStale(2);
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      // Takes the last free slot (swtpm has 3) and is held across calls, as withLoaded does.
      const mine = await tpm.createPrimary('owner', SRK_ECC_P256);
      const next = await tpm.createPrimary('owner', SRK_ECC_P256);
      const still = await tpm.readPublic(mine.handle);
      expect(still.name.equals(mine.name)).toBe(true);
      await tpm.flush(next.handle);
      await tpm.flush(mine.handle);
    } finally {
      await tpm.close();
    }
  });

  it('a dead process that filled every slot does not stop the next CreatePrimary', async () => {
    await leaveStale(3);
    const tpm = await NativeTpm.open(sim.tcti);
    try {
      await tpm.withLoaded(
        () => tpm.createPrimary('owner', SRK_ECC_P256),
        async (o) => {
          expect((await tpm.readPublic(o.handle)).name.equals(o.name)).toBe(true);
        },
      );
    } finally {
      await tpm.close();
    }
  });
});
