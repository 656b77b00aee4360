/**
 * The set-up most appliance tests share: a temporary folder, a fresh swtpm, a SoftHSM2
 * token (SOFTHSM2_CONF set for this process), the EK trust files, with `tls` the make-tls
 * certificates (`dir/tls`, and an unrelated set in `dir/foreign`), and provisioning on the
 * appliance TPM. A set-up that fails half way stops what it started.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { provisionAppliance } from '../../src/appliance.js';
import type { AppConfig } from '../../src/shared/config.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import {
  applianceEnv,
  provisionSimHsm,
  repoRoot,
  startSimTpm,
  type SimHsm,
  type SimTpm,
  writeEkTrust,
} from './sim.js';

const run = promisify(execFile);

export interface ApplianceRig {
  readonly dir: string;
  /** make-tls's folder (`dir/tls`); only made with `tls`. */
  readonly tls: string;
  readonly tpm: SimTpm;
  readonly hsm: SimHsm;
  /** applianceEnv for this rig (with `tls`: the listener certificate and the operator CA). */
  env(extra?: Record<string, string>): Record<string, string>;
  /** Stops the swtpm and deletes the folder. */
  destroy(): Promise<void>;
}

export async function startApplianceRig(
  name: string,
  options: { readonly tls?: boolean } = {},
): Promise<ApplianceRig> {
  const dir = await mkdtemp(join(tmpdir(), `grantor-${name}-`));
  const tls = join(dir, 'tls');
  let tpm: SimTpm | undefined;
  try {
    if (options.tls === true) {
      await run(join(repoRoot, 'scripts/sim/make-tls'), [tls]);
      await run(join(repoRoot, 'scripts/sim/make-tls'), [join(dir, 'foreign')]);
    }
    tpm = await startSimTpm();
    const hsm = await provisionSimHsm(join(dir, 'hsm'), `grantor-${name}`);
    process.env.SOFTHSM2_CONF = hsm.conf;
    await writeEkTrust(dir, tpm.ekCaPem);
    const started = tpm;
    const tlsEnv: Record<string, string> =
      options.tls === true
        ? {
            GRANTOR_TLS_CERT: join(tls, 'server.pem'),
            GRANTOR_TLS_KEY: join(tls, 'server.key'),
            GRANTOR_OPERATOR_CA: join(tls, 'operator-ca.pem'),
          }
        : {};
    return {
      dir,
      tls,
      tpm: started,
      hsm,
      env: (extra = {}) => applianceEnv(started, hsm, dir, { ...tlsEnv, ...extra }),
      destroy: async () => {
        await started.destroy();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await tpm?.destroy();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** provisionAppliance on the configuration's TPM, opened for it and closed after. */
export async function provisionOnTpm(config: AppConfig): Promise<string[]> {
  const tpm = await openTpm(config.tpm);
  try {
    return await provisionAppliance(config, tpm);
  } finally {
    await tpm.close();
  }
}
