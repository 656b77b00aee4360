/**
 * The simulated hardware rig for integration tests and benches: real swtpm instances and a
 * real SoftHSM2 token, provisioned by the same scripts that ./scripts/start uses
 * (scripts/sim/*), on free loopback ports in a temporary folder.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { registerSecret } from './secrets.js';

const run = promisify(execFile);
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const simScripts = join(repoRoot, 'scripts/sim');

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
/** tpm2-pkcs11 as Debian installs it (libtpm2-pkcs11-1). */
export const TPM_PKCS11_MODULE = '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so';

/**
 * A private D-Bus session bus for the resource managers of this run (start-abrmd), named in
 * DBUS_SESSION_BUS_ADDRESS for this process and what it spawns afterwards. Returns a stop.
 */
export async function startSessionBus(): Promise<() => Promise<void>> {
  const { stdout } = await run('dbus-daemon', [
    '--session',
    '--fork',
    '--print-address=1',
    '--print-pid=1',
  ]);
  const [address = '', pid = ''] = stdout.trim().split('\n');
  if (!address.startsWith('unix:') || !/^\d+$/.test(pid))
    throw new Error('dbus-daemon did not report its address');
  process.env.DBUS_SESSION_BUS_ADDRESS = address;
  return () => {
    try {
      process.kill(Number(pid));
    } catch {
      // Already gone.
    }
    return Promise.resolve();
  };
}

export async function portIsFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => {
      res(false);
    });
    srv.listen(port, '127.0.0.1', () => {
      srv.close(() => {
        res(true);
      });
    });
  });
}

/** Two consecutive free loopback ports (swtpm server and control). */
export async function freePortPair(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    // Below Linux's ephemeral range (32768-60999): a port bound seconds after it was found
    // free must not meanwhile become some outgoing connection's local port.
    const port = 10000 + 2 * Math.floor(Math.random() * 11383);
    if ((await portIsFree(port)) && (await portIsFree(port + 1))) return port;
  }
  throw new Error('no free port pair found');
}

export async function provisionTpmTemplate(dir: string): Promise<void> {
  await run(join(simScripts, 'provision-tpm'), [dir]);
}

export interface SimTpm {
  readonly dir: string;
  readonly port: number;
  /** The TCTI of the clients: through the resource manager when there is one. */
  readonly tcti: string;
  /** Whether a tpm2-abrmd sits in front of the swtpm (see startSimTpm). */
  readonly resourceManager: boolean;
  /** The local EK CA chain (issuer then root), PEM, that signed this TPM's EK certificates. */
  readonly ekCaPem: string;
  stop(): Promise<void>;
  /** Start again on the same port and state (after stop()). */
  restart(): Promise<void>;
  /** Stop and delete the state folder. */
  destroy(): Promise<void>;
}

/**
 * A fresh swtpm, copied from the provisioned template made by the global setup (so each
 * test file gets its own TPM with the same EK CA, in milliseconds). With `resourceManager`
 * a tpm2-abrmd runs in front of it (scripts/sim/start-abrmd, on the run's session bus) and
 * `tcti` names it: the addon and tpm2-pkcs11 then share the TPM as on /dev/tpmrm0.
 */
export async function startSimTpm(
  templateDir = process.env.GRANTOR_TEST_TPM_TEMPLATE,
  options: { readonly resourceManager?: boolean } = {},
): Promise<SimTpm> {
  if (templateDir === undefined)
    throw new Error('GRANTOR_TEST_TPM_TEMPLATE is not set (global setup)');
  const dir = await mkdtemp(join(tmpdir(), 'grantor-tpm-'));
  await cp(templateDir, dir, { recursive: true });
  await rm(join(dir, 'swtpm.pid'), { force: true });
  const port = await freePortPair();
  const resourceManager = options.resourceManager === true;
  await rm(join(dir, 'abrmd.pid'), { force: true });
  const start = async (): Promise<string> => {
    const direct = (await run(join(simScripts, 'start-tpm'), [dir, String(port)])).stdout.trim();
    if (!resourceManager) return direct;
    return (await run(join(simScripts, 'start-abrmd'), [dir, String(port)])).stdout.trim();
  };
  const tcti = await start();
  const ekCaPem =
    (await readFile(join(dir, 'ca/issuercert.pem'), 'utf8')) +
    (await readFile(join(dir, 'ca/swtpm-localca-rootca-cert.pem'), 'utf8'));
  const stop = async (): Promise<void> => {
    if (resourceManager) await run(join(simScripts, 'stop-abrmd'), [dir]);
    await run(join(simScripts, 'stop-tpm'), [dir]);
  };
  return {
    dir,
    port,
    tcti,
    resourceManager,
    ekCaPem,
    stop,
    restart: async () => {
      await start();
    },
    destroy: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SimHsm {
  readonly dir: string;
  readonly module: string;
  readonly conf: string;
  readonly tokenLabel: string;
  readonly pinFile: string;
  readonly pin: string;
}

/** A SoftHSM2 token in its own folder; set SOFTHSM2_CONF=conf before C_Initialize. */
export async function provisionSimHsm(dir: string, tokenLabel = 'grantor-test'): Promise<SimHsm> {
  const pinFile = join(dir, 'user-pin');
  await run(join(simScripts, 'provision-hsm'), [dir, tokenLabel, pinFile]);
  const pin = (await readFile(pinFile, 'utf8')).trim();
  // For the run's log scan (log-capture.ts): neither PIN may appear in a log line.
  registerSecret(`HSM user PIN (${tokenLabel})`, pin);
  registerSecret(
    `HSM SO PIN (${tokenLabel})`,
    (await readFile(join(dir, 'so-pin'), 'utf8')).trim(),
  );
  return {
    dir,
    module: SOFTHSM_MODULE,
    conf: join(dir, 'softhsm2.conf'),
    tokenLabel,
    pinFile,
    pin,
  };
}

export interface SimTpmToken {
  readonly dir: string;
  readonly module: string;
  readonly tokenLabel: string;
  readonly pinFile: string;
  readonly pin: string;
  /** The module's environment (TPM2_PKCS11_STORE, TPM2_PKCS11_TCTI). */
  readonly env: Readonly<Record<string, string>>;
}

/**
 * A tpm2-pkcs11 token in `tpm` (which must run behind its resource manager), its store
 * under `dir` (scripts/sim/provision-tpm-pkcs11). Both PINs are registered for the log scan.
 * A process loads one tpm2-pkcs11 store: `useTpmToken` points the module at this one.
 */
export async function provisionSimTpmToken(
  dir: string,
  tpm: SimTpm,
  tokenLabel = 'grantor-tpm',
): Promise<SimTpmToken> {
  if (!tpm.resourceManager) throw new Error('tpm2-pkcs11 needs the TPM behind tpm2-abrmd');
  const pinFile = join(dir, 'user-pin');
  await run(join(simScripts, 'provision-tpm-pkcs11'), [dir, tokenLabel, pinFile, tpm.tcti]);
  const pin = (await readFile(pinFile, 'utf8')).trim();
  registerSecret(`TPM token user PIN (${tokenLabel})`, pin);
  registerSecret(
    `TPM token SO PIN (${tokenLabel})`,
    (await readFile(join(dir, 'so-pin'), 'utf8')).trim(),
  );
  return {
    dir,
    module: TPM_PKCS11_MODULE,
    tokenLabel,
    pinFile,
    pin,
    env: { TPM2_PKCS11_STORE: join(dir, 'store'), TPM2_PKCS11_TCTI: tpm.tcti },
  };
}

/** Point this process's tpm2-pkcs11 at `token` (before the module's first C_Initialize). */
export function useTpmToken(token: SimTpmToken): void {
  Object.assign(process.env, token.env);
}

/**
 * The configuration overrides of an appliance whose grant key lives in `token` (the TPM)
 * and whose audit checkpoint key lives in `hsm` (Ed25519), for applianceEnv's `extra`.
 */
export function tpmKeysEnv(token: SimTpmToken, hsm: SimHsm): Record<string, string> {
  return {
    GRANTOR_PKCS11_MODULE: token.module,
    GRANTOR_HSM_TOKEN_LABEL: token.tokenLabel,
    GRANTOR_HSM_PIN_FILE: token.pinFile,
    GRANTOR_AUDIT_PKCS11_MODULE: hsm.module,
    GRANTOR_AUDIT_HSM_TOKEN_LABEL: hsm.tokenLabel,
    GRANTOR_AUDIT_HSM_PIN_FILE: hsm.pinFile,
  };
}

/** The HSM token that the global setup provisioned for this test run. */
export async function testHsm(): Promise<SimHsm> {
  const dir = process.env.GRANTOR_TEST_HSM_DIR;
  if (dir === undefined) throw new Error('GRANTOR_TEST_HSM_DIR is not set (global setup)');
  return provisionSimHsm(dir);
}

/** One catch-all enrollment rule: every EK that chains to the trusted bundle, active, `labels`. */
export function rigEnrollmentRules(labels: Record<string, string> = {}): unknown {
  return {
    version: 1,
    rules: [{ name: 'rig', match: {}, catchAll: true, labels, state: 'active' }],
  };
}

/**
 * What the operators of a rig appliance trust, written where `applianceEnv` points: the EK
 * CA bundle (`dir/ek-ca.pem`) and the enrollment rules (`dir/enrollment-rules.json`).
 */
export async function writeEkTrust(
  dir: string,
  caPem: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await writeFile(join(dir, 'ek-ca.pem'), caPem);
  await writeFile(join(dir, 'enrollment-rules.json'), JSON.stringify(rigEnrollmentRules(labels)));
}

/**
 * The configuration environment of an appliance on a rig swtpm and SoftHSM2 token, with its
 * state under `dir/state`, its EK CA bundle at `dir/ek-ca.pem` and its enrollment rules at
 * `dir/enrollment-rules.json` (`writeEkTrust`); `extra` adds or overrides.
 */
export function applianceEnv(
  tpm: { readonly tcti: string },
  hsm: SimHsm,
  dir: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    GRANTOR_TPM_TCTI: tpm.tcti,
    GRANTOR_PKCS11_MODULE: hsm.module,
    GRANTOR_HSM_TOKEN_LABEL: hsm.tokenLabel,
    GRANTOR_HSM_PIN_FILE: hsm.pinFile,
    GRANTOR_STATE_DIR: join(dir, 'state'),
    GRANTOR_EK_CA_BUNDLE: join(dir, 'ek-ca.pem'),
    GRANTOR_ENROLLMENT_RULES: join(dir, 'enrollment-rules.json'),
    GRANTOR_POLICY_WATCH: 'false',
    // swtpm's NV is a file: no wear, so no rate bound (the shipped default is for hardware).
    GRANTOR_AUDIT_MIN_ANCHOR_INTERVAL_MS: '0',
    ...extra,
  };
}
