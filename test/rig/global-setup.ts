/**
 * Vitest global setup for the integration project: provisions one swtpm template (EK
 * certificates from a local CA) and one SoftHSM2 token in a temporary folder, exposes
 * them through the environment (workers inherit it), and removes everything afterwards.
 * Each test file starts its own swtpm from the template (test/rig/sim.ts startSimTpm). A
 * private D-Bus session bus is started for the TPM resource managers (tpm2-abrmd) that test
 * files put in front of their swtpm when tpm2-pkcs11 shares it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { provisionSimHsm, provisionTpmTemplate, startSessionBus } from './sim.js';

export default async function setup(): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), 'grantor-rig-'));
  const tpmTemplate = join(root, 'tpm-template');
  await provisionTpmTemplate(tpmTemplate);
  const hsm = await provisionSimHsm(join(root, 'hsm'));
  // The bus of the TPM resource managers (tpm2-abrmd) that test files start.
  const stopBus = await startSessionBus();
  process.env.GRANTOR_TEST_TPM_TEMPLATE = tpmTemplate;
  process.env.GRANTOR_TEST_HSM_DIR = hsm.dir;
  process.env.SOFTHSM2_CONF = hsm.conf;
  return async () => {
    await stopBus();
    if (process.env.GRANTOR_KEEP_RIG === '1') return;
    await rm(root, { recursive: true, force: true });
  };
}
