/**
 * `grantor provision` in a process that kills itself with SIGKILL right after the step
 * named in PROVISION_KILL_AFTER (src/appliance.ts ProvisionStep), to test that provisioning
 * resumes from a stop at any step. Configuration: the GRANTOR_* environment. Prints each
 * line provisioning reports; exit 0 when it finished.
 */
import { provisionAppliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/shared/config.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const killAfter = process.env.PROVISION_KILL_AFTER;
  const tpm = await NativeTpm.open(config.tpm.tcti);
  try {
    const lines = await provisionAppliance(config, tpm, {
      afterStep: (step) => {
        process.stdout.write(`step ${step}\n`);
        if (step === killAfter) process.kill(process.pid, 'SIGKILL');
      },
    });
    for (const line of lines) process.stdout.write(`${line}\n`);
  } finally {
    await tpm.close();
  }
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stdout.write(`failed ${e.code ?? 'error'} ${e.message ?? String(err)}\n`);
  process.exit(1);
});
