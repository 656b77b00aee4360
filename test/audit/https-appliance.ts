/**
 * The whole appliance over HTTPS on loopback for the audit CLI tests (watch, export): the
 * rig's make-tls certificates (`rig.tls/server-ca.pem` for the CLI, `rig.dir/foreign` for a
 * CA that did not sign the server), provisioned on its swtpm, listening on a free port.
 */
import type { AddressInfo } from 'node:net';
import { startApplianceServer, type RunningServer } from '../../src/http/server.js';
import { loadConfig, type AppConfig } from '../../src/shared/config.js';
import { provisionOnTpm, startApplianceRig, type ApplianceRig } from '../rig/appliance.js';
import { repoRoot } from '../rig/sim.js';

export interface HttpsAppliance {
  readonly rig: ApplianceRig;
  readonly server: RunningServer;
  readonly config: AppConfig;
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

export async function startHttpsAppliance(
  name: string,
  env: Record<string, string> = {},
): Promise<HttpsAppliance> {
  const rig = await startApplianceRig(name, { tls: true });
  try {
    const config = loadConfig(rig.env(env), repoRoot);
    await provisionOnTpm(config);
    const server = await startApplianceServer(config);
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const url = `https://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
    return {
      rig,
      server,
      config,
      url,
      close: async () => {
        try {
          await server.close();
        } finally {
          await rig.destroy();
        }
      },
    };
  } catch (e) {
    await rig.destroy();
    throw e;
  }
}
