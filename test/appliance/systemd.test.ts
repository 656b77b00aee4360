/**
 * deploy/systemd/grantor.service: `systemd-analyze verify` finds nothing to say (no
 * unknown key, no misplaced setting), and the hardening docs/deploy.md promises is there.
 * systemd-analyze comes with the `systemd` package, present on Debian hosts; without it
 * (a slim container) the verify test is skipped and says so.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../rig/sim.js';

const run = promisify(execFile);
const unit = join(repoRoot, 'deploy/systemd/grantor.service');

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('deploy/systemd/grantor.service', () => {
  it.skipIf(!hasSystemdAnalyze())('is clean for systemd-analyze verify', async () => {
    const { stdout, stderr } = await run('systemd-analyze', ['verify', unit]);
    expect(`${stdout}${stderr}`).toBe('');
  });

  it('is hardened: no new privileges, a read-only system but the state, only the TPM device', async () => {
    const text = await readFile(unit, 'utf8');
    for (const line of [
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/grantor',
      'DevicePolicy=closed',
      'DeviceAllow=/dev/tpmrm0 rw',
      'EnvironmentFile=/etc/grantor/grantor.env',
      'CapabilityBoundingSet=',
      'User=grantor',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });
});
