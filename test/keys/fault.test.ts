/**
 * Fault recovery against a real SoftHSM2 token of its own, in a child process: the
 * token's files are moved away during a run of signs and brought back. Signs fail typed
 * while the token is away, none succeeds falsely, and signing resumes without a restart.
 * A wrong PIN is reported with its own code and never leaks.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionSimHsm, repoRoot, type SimHsm } from '../rig/sim.js';
import type { Outcome } from './fault-child.js';

const run = promisify(execFile);
let root: string;
let hsm: SimHsm;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grantor-keys-fault-'));
  hsm = await provisionSimHsm(join(root, 'hsm'), 'grantor-fault');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function child(mode: string, dbName: string): Promise<unknown> {
  const { stdout } = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      join(repoRoot, 'test/keys/fault-child.ts'),
      mode,
      hsm.dir,
      hsm.tokenLabel,
      hsm.pinFile,
      join(root, dbName),
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, SOFTHSM2_CONF: hsm.conf },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
    },
  );
  const last = stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last);
}

describe('HSM fault recovery', () => {
  it('fails signs typed while the token is away, never falsely succeeds, and resumes without restart', async () => {
    const result = (await child('fault', 'db-fault')) as {
      outcomes: Outcome[];
      jwks: JSONWebKeySet;
      readyAway: { ok: boolean; reason?: string };
      readyBack: { ok: boolean };
    };
    const { outcomes } = result;
    const failures = outcomes.filter((o) => !o.ok);
    // Every failure is the typed HSM failure, nothing generic.
    expect(new Set(failures.map((f) => f.code))).toEqual(new Set(['hsm_unavailable']));
    // Signs started while the token was away and finished before it returned all failed.
    const away = outcomes.filter((o) => o.startedPhase === 'away' && o.phase === 'away');
    expect(away.length).toBeGreaterThanOrEqual(10);
    expect(away.filter((o) => o.ok)).toEqual([]);
    expect(result.readyAway).toMatchObject({ ok: false, reason: 'hsm_unavailable' });
    // Signing resumed in the same process, and is ready again.
    expect(outcomes.filter((o) => o.startedPhase === 'back' && o.ok).length).toBeGreaterThanOrEqual(
      20,
    );
    expect(result.readyBack).toEqual({ ok: true });
    // No success is false: every signature verifies against the published set.
    const jwks = createLocalJWKSet(result.jwks);
    const successes = outcomes.filter((o) => o.ok);
    expect(successes.length).toBeGreaterThanOrEqual(40);
    for (const o of successes) await compactVerify(o.jws ?? '', jwks, { algorithms: ['ES256'] });
  }, 120_000);

  it('reports a wrong PIN as hsm_pin_incorrect, and never puts the PIN in an error', async () => {
    const result = (await child('wrong-pin', 'db-pin')) as { attempts: string[]; leaked: boolean };
    expect(result.attempts).toEqual(['hsm_pin_incorrect', 'hsm_pin_incorrect']);
    expect(result.leaked).toBe(false);
  }, 120_000);
});
