/**
 * The image the Dockerfile builds starts: with no Docker engine here, scripts/docker-tree
 * materialises the Dockerfile's COPY list into a temporary directory, this checkout's
 * node_modules and native build stand in for its RUN steps (npm ci, the addon build), the
 * TypeScript is built there (`npm run build`: tsc -p tsconfig.build.json), and the image's
 * CMD runs from that directory against a real swtpm and SoftHSM2 token, with the image's
 * defaults for the policy set, the schema and the EK CA bundle: it must become ready.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionAppliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/shared/config.js';
import { openTpm } from '../../src/tpm/tpm.native.js';
import {
  applianceEnv,
  freePortPair,
  provisionSimHsm,
  repoRoot,
  startSimTpm,
  writeEkTrust,
  type SimHsm,
  type SimTpm,
} from '../rig/sim.js';

const run = promisify(execFile);

let dir: string;
let tree: string;
let command: string[];
let tpm: SimTpm;
let hsm: SimHsm;
let child: ChildProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-docker-tree-'));
  tree = join(dir, 'opt-grantor');
  const { stdout } = await run(join(repoRoot, 'scripts/docker-tree'), [tree]);
  command = stdout.trim().split(/\s+/);
  // The RUN steps' products: npm ci's node_modules (the addon is built into native/build,
  // copied with native/ when present, as a build context holding it would be).
  await symlink(join(repoRoot, 'node_modules'), join(tree, 'node_modules'));
  await run(
    process.execPath,
    [join(tree, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: tree,
    },
  );
  tpm = await startSimTpm();
  hsm = await provisionSimHsm(join(dir, 'hsm'), 'grantor-docker-tree');
  await writeEkTrust(dir, tpm.ekCaPem);
}, 300_000);

afterAll(async () => {
  child?.kill('SIGTERM');
  await tpm.destroy();
  await rm(dir, { recursive: true, force: true });
});

async function readyz(port: number): Promise<{ status: number; body: unknown } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    return { status: res.status, body: await res.json() };
  } catch {
    return undefined;
  }
}

describe('the Dockerfile file tree', () => {
  it('holds what the appliance reads at run time', async () => {
    const { stdout } = await run('ls', [tree]);
    for (const name of [
      'dist',
      'policies',
      'reference-policies',
      'trust',
      'native',
      'package.json',
    ]) {
      expect(stdout.split('\n')).toContain(name);
    }
    expect(command).toEqual(['node', 'dist/src/main.js']);
  });

  it("starts with the image's command and becomes ready on the shipped policy set", async () => {
    const port = await freePortPair();
    // The image's environment (ENV) and a deployer's: no policy, schema or EK CA paths,
    // so the image's own files are used.
    const env: Record<string, string> = {
      ...applianceEnv(tpm, hsm, dir),
      SOFTHSM2_CONF: hsm.conf,
      GRANTOR_LISTEN: `127.0.0.1:${port}`,
      NODE_ENV: 'production',
      GRANTOR_LOG_LEVEL: 'info',
    };
    delete env.GRANTOR_EK_CA_BUNDLE;
    process.env.SOFTHSM2_CONF = hsm.conf;
    const t = await openTpm({ tcti: tpm.tcti });
    try {
      await provisionAppliance(loadConfig(env, tree), t);
    } finally {
      await t.close();
    }
    let output = '';
    const [bin, ...args] = command;
    child = spawn(bin === 'node' ? process.execPath : (bin ?? ''), args, {
      cwd: tree,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    let answer: Awaited<ReturnType<typeof readyz>>;
    for (let i = 0; i < 120 && answer?.status !== 200 && child.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 500));
      answer = await readyz(port);
    }
    expect(answer?.status, output).toBe(200);
    expect(answer?.body).toMatchObject({ checks: { policy: { ok: true } } });
    // The policy set it loaded is the image's copy.
    expect(output).toContain(join(tree, 'policies'));
  }, 120_000);
});
