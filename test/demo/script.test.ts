/**
 * `./scripts/demo`, the script itself, from a copy of the repository (test/rig/repo-copy.ts:
 * its TypeScript build cannot touch the tree other tests run from): it starts an appliance
 * of its own (swtpm, SoftHSM2) on loopback ports of this test, two runtime swtpms, nginx
 * from the demo's folder with its own configuration, and tells the whole story. Every step
 * must print `ok`; the story's enforcement and auditor lines are checked, and nothing the
 * script started may outlive it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyRepository } from '../rig/repo-copy.js';
import { freePortPair, portIsFree } from '../rig/sim.js';

const RUN_TIMEOUT_MS = 900_000;
let root = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grantor-demo-script-'));
  await copyRepository(join(root, 'repo'));
}, 300_000);

afterAll(async () => {
  if (root !== '') await rm(root, { recursive: true, force: true });
});

/** Six consecutive free ports (two per swtpm: the two runtimes' and the appliance's). */
async function sixPorts(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const base = await freePortPair();
    const rest = await Promise.all([2, 3, 4, 5].map((d) => portIsFree(base + d)));
    if (rest.every(Boolean)) return base;
  }
  throw new Error('no six free ports found');
}

describe('./scripts/demo', () => {
  it(
    'tells the whole story with the real parts and exits 0',
    async () => {
      const tree = join(root, 'repo');
      const demo = join(root, 'demo');
      const [tpmPort, listen] = [await sixPorts(), await freePortPair()];
      const child = spawn(join(tree, 'scripts/demo'), [], {
        cwd: tree,
        env: {
          ...process.env,
          // Its own appliance on a port of this test: never one another test or user runs.
          GRANTOR_DEMO_URL: `http://127.0.0.1:${listen}`,
          GRANTOR_DEMO_DIR: demo,
          GRANTOR_DEMO_TPM_PORT: String(tpmPort),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, output).toBe(0);
      const steps = output.split('\n').filter((l) => /^(ok|FAIL) /.test(l));
      expect(
        steps.filter((l) => l.startsWith('FAIL')),
        output,
      ).toEqual([]);
      expect(steps).toHaveLength(37);
      for (const re of [
        /^ok {3}nginx {5}.*in front of grantor-gateway \(proxy mode/m,
        /^ok {3}outcome {3}GET \/v1\/grants\/\S+\/lineage: .* outcome succeeded/m,
        /^ok {3}refused {3}the same grant at the offline gateway: REFUSED 403 grant_(runtime_)?revoked, [\d.]+ s after the revoke \(bound 60 s\)$/m,
        /^ok {3}verify {4}grantor audit verify, offline \(verifier key, anchor pin and the nonce\): OK/m,
        /^ok {3}allow {5}#\d+ grant\.decision allow /m,
        /^ok {3}deny {6}#\d+ grant\.decision deny /m,
        /^ok {3}refusal {3}#\d+ grant\.refused /m,
        /^the story ran/m,
      ]) {
        expect(output).toMatch(re);
      }
      // nginx ran from the demo's folder with its own configuration, and was stopped.
      const conf = await readFile(join(demo, 'nginx/nginx.conf'), 'utf8');
      expect(conf).toContain(`pid ${join(demo, 'nginx/nginx.pid')};`);
      const { stdout } = await new Promise<{ stdout: string }>((resolve) => {
        const ps = spawn('ps', ['-eo', 'args'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let text = '';
        ps.stdout.on('data', (d: Buffer) => (text += d.toString()));
        ps.once('exit', () => {
          resolve({ stdout: text });
        });
      });
      expect(stdout.split('\n').filter((l) => l.includes(demo))).toEqual([]);
    },
    RUN_TIMEOUT_MS,
  );
});
