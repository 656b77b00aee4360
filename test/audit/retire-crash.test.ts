/**
 * Retention survives SIGKILL at every step (issue 17 item 4): the audit service in a child
 * process on the real adapters (LevelDB, NV anchor in swtpm) retires frozen period 0 and
 * kills itself right after the act entry is durable, right after the retirement record is
 * written, or right after the first chunk of deletions (and once at two of them in turn).
 * Each time the next process must start (the start-up check accepts the store), finish the
 * retirement as one act with one record naming a bundle whose digest the act carries, leave
 * no entry of the period, and pass `grantor audit verify --full` (retire-crash-child.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { repoRoot, startSimTpm, type SimTpm } from '../rig/sim.js';
import { buildCrashChild, type CrashChild } from './crash-harness.js';
import { provisionAnchorAt, tearDownTpm, tempDir } from './helpers.js';

let sim: SimTpm;
let work: string;
let child: CrashChild;

beforeAll(async () => {
  work = await tempDir('grantor-retire-crash-');
  child = await buildCrashChild(join(repoRoot, 'test/audit/retire-crash-child.ts'));
  sim = await startSimTpm();
});

afterAll(() => tearDownTpm(() => child.dispose(), [sim], work));

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly lines: string[];
}

function run(env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(child.command, [...child.args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    p.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    p.on('error', reject);
    p.on('close', (code, signal) => {
      const lines = out.split('\n').filter((l) => l !== '');
      if (err !== '') lines.push(`stderr: ${err.trim()}`);
      resolve({ code, signal, lines });
    });
  });
}

function anchorEnv(config: TpmAnchorConfig): string {
  return JSON.stringify({
    ...config,
    pinnedGenesis: config.pinnedGenesis?.toString(),
    pinnedAkPublic: Buffer.from(config.pinnedAkPublic ?? []).toString('base64'),
    akTemplate: Buffer.from(config.akTemplate ?? []).toString('base64'),
  });
}

const CASES = [['acted'], ['recorded'], ['chunk'], ['acted', 'chunk']] as const;

describe('retiring a period under SIGKILL', () => {
  it.each(CASES.map((kills, i) => [kills.join(' then '), kills, i] as const))(
    'killed %s, the next start finishes one retirement that verifies',
    async (_name, kills, i) => {
      // Each case has its own anchor (NV indices) and database on the one swtpm.
      const config = await provisionAnchorAt(sim.tcti, {
        counterIndex: 0x01500040 + 2 * i,
        extendIndex: 0x01500041 + 2 * i,
      });
      const dir = join(work, `case-${i}`);
      await mkdir(join(dir, 'retired'), { recursive: true });
      const env = {
        CRASH_DB: join(dir, 'db'),
        CRASH_TCTI: sim.tcti,
        CRASH_ANCHOR: anchorEnv(config),
        RETIRE_DIR: join(dir, 'retired'),
      };
      const prepared = await run({ ...env, RETIRE_MODE: 'prepare' });
      expect(prepared.lines, prepared.lines.join('\n')).toContain('prepared');

      for (const kill of kills) {
        const killed = await run({ ...env, RETIRE_MODE: 'retire', RETIRE_KILL_AT: kill });
        // It died where it was aimed, not earlier with an error.
        expect(killed.signal, `${kill}: ${killed.lines.join('\n')}`).toBe('SIGKILL');
      }
      const after = await run({ ...env, RETIRE_MODE: 'retire' });
      expect(after.code, after.lines.join('\n')).toBe(0);
      expect(after.lines.at(-1)).toMatch(/^checked period-0-/);
    },
    60_000,
  );
});
