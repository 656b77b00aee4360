/**
 * `./scripts/start --grant-key=tpm`, the script itself (issue #21): it starts swtpm behind
 * tpm2-abrmd on a private D-Bus bus, provisions a tpm2-pkcs11 token in that TPM and runs the
 * appliance with its grant key there (the audit checkpoint key in SoftHSM2). A runtime on
 * its own swtpm (EK certified by the script's local CA, as ./scripts/demo does it) enrolls,
 * attests over HTTP with the attester library and gets a grant, which the gateway SDK
 * verifies against the appliance's JWKS; the key is the one in the TPM token. A SIGTERM to
 * the script stops the appliance and everything the script started (swtpm, tpm2-abrmd and
 * its D-Bus daemon); neither PIN reaches its output. With the server stopped,
 * `./scripts/cli`'s local commands reach the TPM-held token the same way (a key rotation in
 * the TPM). A state folder keeps its mode.
 *
 * The script runs from a copy of the repository's files (node_modules linked, the built
 * addon copied after the sources so that it is fresh): it builds the TypeScript into that
 * copy's dist/ as it always does (slow on a busy machine), and neither that build nor a
 * rebuild of the addon can touch the tree other tests run from.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Attester } from '../../attester/attester.js';
import { JwksClient, createGrantVerifier } from '../../src/gateway/index.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import type { TpmPort } from '../../src/tpm/tpm.port.js';
import { grantRequest, TICKET_READ } from '../grants/rig.js';
import { copyRepository } from '../rig/repo-copy.js';
import { freePortPair, repoRoot, rigEnrollmentRules } from '../rig/sim.js';
import { registerSecret } from '../rig/secrets.js';

const run = promisify(execFile);
const sim = (name: string): string => join(repoRoot, 'scripts/sim', name);

const START_TIMEOUT_MS = 600_000;

let root: string;
/** The copy of the repository the script runs from. */
let tree: string;
let state: string;
let url: string;
let script: ChildProcess | undefined;
let output = '';
let exited: Promise<number | null>;
let runtimeDir: string;
let runtimeTpm: TpmPort | undefined;

/** Whether `pid` runs (a zombie waiting for init to reap it does not). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The state follows the command in parentheses: "pid (comm) S ...".
  return stat !== '' && !/\) Z /.test(stat);
}

async function readyz(): Promise<number> {
  try {
    return (await fetch(`${url}/readyz`)).status;
  } catch {
    return 0;
  }
}

/** An even free loopback port below 32768 whose successor is free too. */
async function freeLowPort(): Promise<number> {
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => {
        resolve(false);
      });
      srv.listen(port, '127.0.0.1', () => {
        srv.close(() => {
          resolve(true);
        });
      });
    });
  for (let i = 0; i < 200; i++) {
    const port = 10000 + 2 * Math.floor(Math.random() * 11000);
    if ((await free(port)) && (await free(port + 1))) return port;
  }
  throw new Error('no free port below 32768');
}

/** Starts the script in `state`; resolves when /readyz is 200 (or the script exits). */
async function startScript(args: readonly string[]): Promise<void> {
  // Bound only after the build (minutes): ports below Linux's ephemeral range (32768-60999),
  // which the box's outgoing connections cannot take in the meantime.
  const listenPort = await freeLowPort();
  let tpmPort = await freeLowPort();
  while (tpmPort === listenPort) tpmPort = await freeLowPort();
  url = `http://127.0.0.1:${listenPort}`;
  output = '';
  const child = spawn(join(tree, 'scripts/start'), [...args], {
    cwd: tree,
    env: {
      ...process.env,
      GRANTOR_STATE_DIR: state,
      GRANTOR_PLAIN_HTTP: '1',
      GRANTOR_LISTEN: `127.0.0.1:${listenPort}`,
      GRANTOR_SIM_TPM_PORT: String(tpmPort),
      // Every runtime whose EK chains to the script's local CA is active, team support.
      GRANTOR_ENROLLMENT_RULES: join(root, 'rules.json'),
      GRANTOR_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  script = child;
  const collect = (d: Buffer): void => {
    output += d.toString();
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  exited = new Promise((resolve) => {
    child.once('exit', resolve);
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return;
    if ((await readyz()) === 200) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`./scripts/start did not become ready:\n${output}`);
}

/** The EC points (CKA_EC_POINT, hex) of the public keys in the script's tpm2-pkcs11 token. */
async function tokenPoints(): Promise<string[]> {
  const store = join(state, 'tpm-token/store');
  const { stdout } = await run('tpm2_ptool', [
    'listobjects',
    '--path',
    store,
    '--label',
    'grantor-tpm',
  ]);
  const ids = [...stdout.matchAll(/CKA_CLASS: CKO_PUBLIC_KEY[\s\S]*?\n {2}id: (\d+)/g)].map(
    (m) => m[1] ?? '',
  );
  const points: string[] = [];
  for (const id of ids) {
    const attrs = (await run('tpm2_ptool', ['objmod', '--path', store, '--id', id])).stdout;
    // 385 = CKA_EC_POINT (0x181): the DER OCTET STRING of the uncompressed point.
    const point = /^385: ([0-9a-f]+)$/m.exec(attrs)?.[1];
    if (point !== undefined) points.push(point);
  }
  return points;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grantor-start-tpm-'));
  tree = join(root, 'repo');
  await copyRepository(tree);
  state = join(root, 'var');
  await writeFile(
    join(root, 'rules.json'),
    JSON.stringify(rigEnrollmentRules({ team: 'support' })),
  );
  await startScript(['--grant-key=tpm']);
  // The PINs the script made, for the run's log scan and the checks below.
  for (const [label, file] of [
    ['TPM token user PIN (start)', 'tpm-token/user-pin'],
    ['TPM token SO PIN (start)', 'tpm-token/so-pin'],
    ['HSM user PIN (start)', 'hsm/user-pin'],
    ['HSM SO PIN (start)', 'hsm/so-pin'],
  ] as const) {
    registerSecret(label, (await readFile(join(state, file), 'utf8')).trim());
  }
  // The runtime's TPM, its EK certified by the script's local CA (as ./scripts/demo does).
  runtimeDir = join(root, 'runtime-tpm');
  await cp(join(state, 'tpm/ca'), join(runtimeDir, 'ca'), {
    recursive: true,
    filter: (src) => !/swtpm-localca\.(conf|options)$|swtpm_setup\.conf$/.test(src),
  });
  await run(sim('provision-tpm'), [runtimeDir]);
  const tcti = (await run(sim('start-tpm'), [runtimeDir, String(await freePortPair())])).stdout;
  runtimeTpm = await openTpm({ tcti: tcti.trim() });
}, START_TIMEOUT_MS + 120_000);

afterAll(async () => {
  await runtimeTpm?.close();
  await run(sim('stop-tpm'), [runtimeDir]).catch(() => undefined);
  if (script !== undefined && script.exitCode === null) {
    script.kill('SIGTERM');
    await exited;
  }
  await rm(root, { recursive: true, force: true });
}, 120_000);

describe('./scripts/start --grant-key=tpm', () => {
  it('serves a grant signed in the TPM that verifies from the JWKS', async () => {
    expect(await readyz(), output).toBe(200);
    const tpm = runtimeTpm;
    if (tpm === undefined) throw new Error('no runtime TPM');
    const attester = new Attester(tpm, { url });
    expect(await attester.enroll('start-tpm-agent')).toBe('active');
    const verdict = await attester.attest();
    expect(verdict.verdict).toBe('trusted');
    const runtimeId = attester.state.runtimeId ?? '';
    const answer = await attester.requestGrant(
      grantRequest(runtimeId, { requestId: 'start-tpm-1' }),
    );

    const issuer = ((await (await fetch(`${url}/v1/audit/verifier`)).json()) as { origin: string })
      .origin;
    const verifier = createGrantVerifier({
      issuer,
      audience: 'gw_tickets',
      keys: new JwksClient({ url: `${url}/.well-known/jwks.json` }),
    });
    const verified = await verifier.verify(answer.grant, { execution: TICKET_READ });
    expect(verified.runtimeId).toBe(runtimeId);

    // The key that signed it is in the TPM token: its public point is an object of the
    // tpm2-pkcs11 store (TPM-wrapped; tpm2_ptool reads it without the TPM or a PIN).
    const { kid } = JSON.parse(
      Buffer.from(answer.grant.split('.')[0] ?? '', 'base64url').toString('utf8'),
    ) as { kid: string };
    const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as {
      keys: { kid: string; x: string; y: string }[];
    };
    const jwk = jwks.keys.find((k) => k.kid === kid);
    if (jwk === undefined) throw new Error(`kid ${kid} is not in the JWKS`);
    const xy = Buffer.concat([
      Buffer.from(jwk.x, 'base64url'),
      Buffer.from(jwk.y, 'base64url'),
    ]).toString('hex');
    // An OCTET STRING (04, 65 bytes) holding the uncompressed point (04 || x || y).
    expect(await tokenPoints()).toContain(`044104${xy}`);
  }, 300_000);

  it('a SIGTERM stops the appliance, swtpm, tpm2-abrmd and its D-Bus daemon; no PIN was printed', async () => {
    const pids: number[] = [];
    for (const file of ['swtpm.pid', 'abrmd.pid', 'dbus.pid']) {
      pids.push(Number(await readFile(join(state, 'tpm', file), 'utf8')));
    }
    for (const pid of pids) expect(await alive(pid)).toBe(true);
    script?.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => 'gone');
      expect(await alive(pid), `pid ${pid}: ${stat}\n${output}`).toBe(false);
    }
    expect(await readyz()).toBe(0);
    for (const file of ['tpm-token/user-pin', 'tpm-token/so-pin', 'hsm/user-pin']) {
      expect(output).not.toContain((await readFile(join(state, file), 'utf8')).trim());
    }
  }, 120_000);

  it('./scripts/cli runs a local key ceremony on the TPM-held token, and stops what it started', async () => {
    // The server is stopped (previous test): the CLI brings up swtpm, a bus and tpm2-abrmd
    // for the command, as ./scripts/start does, and the grant key rotates inside the TPM.
    const before = await tokenPoints();
    let out: string;
    try {
      ({ stdout: out } = await run(join(tree, 'scripts/cli'), ['keys', 'rotate', 'grant'], {
        cwd: tree,
        env: { ...process.env, GRANTOR_STATE_DIR: state, GRANTOR_LOG_LEVEL: 'warn' },
      }));
    } catch (e) {
      const { stdout, stderr } = e as { stdout?: string; stderr?: string };
      throw new Error(`./scripts/cli keys rotate failed:\n${stdout ?? ''}${stderr ?? ''}`);
    }
    const active = /^active\t(\S+)\tgrant\tES256\tactive\t/m.exec(out);
    expect(active, out).not.toBeNull();
    const after = await tokenPoints();
    // One more key pair in the TPM token, and the one the CLI made active is published.
    expect(after.length).toBe(before.length + 1);
    const { stdout: listed } = await run(
      join(tree, 'scripts/cli'),
      ['keys', 'list', '--purpose', 'grant', '--json'],
      { cwd: tree, env: { ...process.env, GRANTOR_STATE_DIR: state, GRANTOR_LOG_LEVEL: 'warn' } },
    );
    const keys = JSON.parse(listed) as { kid: string; state: string }[];
    expect(keys.find((k) => k.state === 'active')?.kid).toBe(active?.[1]);
    // Nothing the CLI started outlives it, and no PIN reached its output.
    for (const file of ['swtpm.pid', 'abrmd.pid', 'dbus.pid']) {
      const pid = Number(await readFile(join(state, 'tpm', file), 'utf8').catch(() => '0'));
      if (pid !== 0) expect(await alive(pid), `${file} ${pid}`).toBe(false);
    }
    for (const file of ['tpm-token/user-pin', 'tpm-token/so-pin', 'hsm/user-pin']) {
      expect(out + listed).not.toContain((await readFile(join(state, file), 'utf8')).trim());
    }
  }, 300_000);

  it('refuses to start a state folder of the TPM mode with its grant key in the HSM', async () => {
    await startScript(['--grant-key=hsm']);
    expect(await exited).not.toBe(0);
    expect(output).toContain('was provisioned with --grant-key=tpm');
    expect(await readyz()).toBe(0);
  }, 120_000);
});
