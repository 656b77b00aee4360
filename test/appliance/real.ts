/**
 * The real appliance as production composes it (`provisionAppliance`, then
 * `startApplianceServer`: every plugin, the policy workers, the metrics, the limits) over
 * an swtpm and a SoftHSM2 token of its own, plus a second swtpm for a runtime driven by
 * tpm2-tools, trusted by the appliance (the same local EK CA signed both EK certificates)
 * and measured against a reference policy of its current PCR values. The runtime helpers
 * of the grants suite (enroll, attest, grantBody, signed) work against `rig`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { provisionAppliance } from '../../src/appliance.js';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import { readPcrs } from '../attestation/harness.js';
import { tpm2Tools, type Tools } from '../attestation/tools.js';
import { PCRS, type Rig } from '../grants/rig.js';
import {
  applianceEnv,
  provisionSimHsm,
  provisionSimTpmToken,
  repoRoot,
  startSimTpm,
  tpmKeysEnv,
  useTpmToken,
  type SimHsm,
  type SimTpm,
  type SimTpmToken,
  writeEkTrust,
} from '../rig/sim.js';

export interface RealAppliance {
  readonly dir: string;
  readonly applianceTpm: SimTpm;
  readonly runtimeTpm: SimTpm;
  readonly tools: Tools;
  readonly hsm: SimHsm;
  /** The grant key's token in the appliance's TPM (`grantKeys: 'tpm'`). */
  readonly tpmToken: SimTpmToken | undefined;
  readonly server: RunningServer;
  /** For the grants suite's runtime helpers: the app and the runtime's tpm2-tools. */
  readonly rig: Rig;
  config(): AppConfig;
  close(): Promise<void>;
}

/**
 * `name` labels the temporary folder and the HSM token; `env` adds to the configuration.
 * With `grantKeys: 'tpm'` the appliance's swtpm runs behind tpm2-abrmd, shared by the addon
 * (anchoring) and tpm2-pkcs11 (the grant key, in a token provisioned in that TPM); the
 * audit checkpoint key stays in the SoftHSM2 token. One such appliance per process.
 */
export async function startRealAppliance(
  name: string,
  env: Record<string, string> = {},
  options: { readonly grantKeys?: 'hsm' | 'tpm' } = {},
): Promise<RealAppliance> {
  const dir = await mkdtemp(join(tmpdir(), `grantor-${name}-`));
  const inTpm = options.grantKeys === 'tpm';
  const applianceTpm = await startSimTpm(undefined, { resourceManager: inTpm });
  const runtimeTpm = await startSimTpm();
  const tools = await tpm2Tools(runtimeTpm.tcti);
  const hsm = await provisionSimHsm(join(dir, 'hsm'), `grantor-${name}`);
  process.env.SOFTHSM2_CONF = hsm.conf;
  const tpmToken = inTpm
    ? await provisionSimTpmToken(join(dir, 'tpm-token'), applianceTpm, `grantor-${name}-tpm`)
    : undefined;
  if (tpmToken !== undefined) useTpmToken(tpmToken);
  // Both swtpms come from one template: the same local EK CA signed their EK certificates.
  await writeEkTrust(dir, runtimeTpm.ekCaPem);
  const values = await readPcrs(tools, PCRS);
  await writeFile(
    join(dir, 'reference.json'),
    JSON.stringify({
      name: `swtpm-${name}`,
      selector: {},
      catchAll: true,
      pcrs: { sha256: Object.fromEntries(PCRS.map((p, i) => [String(p), [values[i]]])) },
      allowReset: true,
    }),
  );
  const config = (): AppConfig =>
    loadConfig(
      applianceEnv(applianceTpm, hsm, dir, {
        GRANTOR_REFERENCE_POLICIES: join(dir, 'reference.json'),
        ...(tpmToken === undefined ? {} : tpmKeysEnv(tpmToken, hsm)),
        ...env,
      }),
      repoRoot,
    );
  const t = await openTpm({ tcti: applianceTpm.tcti });
  try {
    await provisionAppliance(config(), t);
  } finally {
    await t.close();
  }
  const server = await startApplianceServer(config());
  return {
    dir,
    applianceTpm,
    runtimeTpm,
    tools,
    hsm,
    tpmToken,
    server,
    rig: { app: server.app, tools, attestation: server.appliance?.attestation } as unknown as Rig,
    config,
    close: async () => {
      await server.close();
      await tools.close();
      await runtimeTpm.destroy();
      await applianceTpm.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
