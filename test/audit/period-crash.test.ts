/**
 * A log period switch survives SIGKILL at every step (issue 17 item 3): the audit service
 * in a child process on the real adapters (LevelDB, NV anchor in swtpm) starts a new period
 * in the middle of concurrent appends in every run and is killed at random moments (during
 * start-up and the recovery it runs, or under load), or kills itself at each step of the
 * switch: right after its one synced write, right after the extend that anchors the link
 * batch, right after the increment (before the new period serves). After every restart the
 * child checks (period-crash-child.ts) that every acknowledged append is in its period,
 * exactly one period is current, each period opens with its link to the one before, the
 * anchor chain over every period ends at the TPM's certified values, and every period's
 * tiles equal those recomputed independently. GRANTOR_PERIOD_CRASH_CYCLES sets the kills.
 */
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { mulberry32 } from '../rig/prng.js';
import { repoRoot, startSimTpm, type SimTpm } from '../rig/sim.js';
import { buildCrashChild, runCrashHarness, type CrashChild } from './crash-harness.js';
import { provisionAnchorAt, tearDownTpm, tempDir } from './helpers.js';

const CYCLES = Number(process.env.GRANTOR_PERIOD_CRASH_CYCLES ?? '45');
const SWITCH_POINTS = ['switch:stored', 'switch:extended', 'switch:counted'] as const;

let sim: SimTpm;
let config: TpmAnchorConfig;
let work: string;
let child: CrashChild;

beforeAll(async () => {
  work = await tempDir('grantor-period-crash-');
  await mkdir(work, { recursive: true });
  child = await buildCrashChild(join(repoRoot, 'test/audit/period-crash-child.ts'));
  sim = await startSimTpm();
  config = await provisionAnchorAt(sim.tcti);
});

afterAll(() => tearDownTpm(() => child.dispose(), [sim], work));

describe('log period switch under SIGKILL', () => {
  it(
    `survives ${CYCLES} kills, one period current and linked after every recovery`,
    async () => {
      const seed = Number(process.env.GRANTOR_CRASH_SEED ?? Date.now() % 1_000_000);
      const aimed: Record<string, number> = {};
      const report = await runCrashHarness({
        child,
        cycles: CYCLES,
        acksFile: join(work, 'acks'),
        random: mulberry32(seed),
        env: {
          CRASH_DB: join(work, 'db'),
          CRASH_TCTI: sim.tcti,
          CRASH_ANCHOR: JSON.stringify({
            ...config,
            pinnedGenesis: config.pinnedGenesis?.toString(),
            pinnedAkPublic: Buffer.from(config.pinnedAkPublic ?? []).toString('base64'),
            akTemplate: Buffer.from(config.akTemplate ?? []).toString('base64'),
          }),
          CRASH_CONCURRENCY: '4',
        },
        // Random kills under load get time to reach the switch (it starts after a few acks).
        maxLoadMs: 300,
        aimedKillShare: 0.6,
        // Round robin over the switch's steps, so each is hit whatever the seed.
        aimAt: () => {
          const turn = Object.values(aimed).reduce((a, b) => a + b, 0);
          const point = SWITCH_POINTS[turn % SWITCH_POINTS.length] ?? 'switch:stored';
          aimed[point] = (aimed[point] ?? 0) + 1;
          return point;
        },
      });
      const summary = `seed ${seed}, kills ${JSON.stringify(report.killsByKind)}, aimed ${JSON.stringify(aimed)}, starts ${JSON.stringify(report.starts)}`;
      console.info(`period crash harness: ${summary}`);
      expect(report.kills, summary).toBe(CYCLES);
      // Every step of the switch was hit, and its recoveries were the ones start-up completes.
      for (const point of SWITCH_POINTS) expect(aimed[point] ?? 0, summary).toBeGreaterThan(0);
      expect(report.starts.stored_not_anchored ?? 0, summary).toBeGreaterThan(0);
      expect(report.starts.extended_not_counted ?? 0, summary).toBeGreaterThan(0);
      // Acknowledged appends in more than one period.
      const periods = new Set([...report.acked.keys()].map((k) => Math.floor(k / 1e9)));
      expect(periods.size, summary).toBeGreaterThan(1);
    },
    60_000 + CYCLES * 3_000,
  );
});
