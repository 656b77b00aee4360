/**
 * Crash consistency (issue 4, "Done when"; issue 13): the audit service in a child process
 * on the real adapters (LevelDB, NV anchor in swtpm), killed with SIGKILL 1,000 times: at
 * random moments (during start-up and its recovery, or under load) and, for half of the
 * kills, by the child itself at the crash points the start-up check must complete (right
 * after a batch is durable in the store; right after its extend). After every restart the
 * start-up check must accept the store and every acknowledged append must be in it; every
 * recovery case must have been hit many times (counted from the children's start-up
 * reports); after every restart the child checks that the stored tiles equal those recomputed
 * from the entries (tiles-check.ts, code independent of the server's tree), and at the end
 * the log and its tiles are checked again here, independently.
 * GRANTOR_CRASH_CYCLES sets the number of kills (default 1000) for a longer run.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape } from '../../src/audit/entry.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { buildCrashChild, runCrashHarness, type CrashChild } from './crash-harness.js';
import { mkdir } from 'node:fs/promises';
import { provisionAnchorAt, tearDownTpm, tempDir } from './helpers.js';
import { mulberry32 } from '../rig/prng.js';
import { expectedTiles, storedTiles, tilesDisagree, timeIndexDisagrees } from './tiles-check.js';

const CYCLES = Number(process.env.GRANTOR_CRASH_CYCLES ?? '1000');
/** Each recovery case must be reported by at least this many starts. */
const CASE_FLOOR = Math.max(1, Math.floor(CYCLES / 20));
// Independent lanes (own swtpm, own store) run side by side: a cycle is mostly process
// start-up latency, which overlaps well even on two cores.
const LANES = Math.max(1, Number(process.env.GRANTOR_CRASH_LANES ?? '4'));

interface Lane {
  readonly sim: SimTpm;
  readonly config: TpmAnchorConfig;
  readonly dir: string;
}

let lanes: Lane[] = [];
let work: string;
let child: CrashChild;

beforeAll(async () => {
  work = await tempDir('grantor-audit-crash-');
  child = await buildCrashChild();
  lanes = await Promise.all(
    Array.from({ length: LANES }, async (_, i) => {
      const dir = join(work, `lane-${i}`);
      await mkdir(dir, { recursive: true });
      const sim = await startSimTpm();
      return { sim, config: await provisionAnchorAt(sim.tcti), dir };
    }),
  );
});

afterAll(() =>
  tearDownTpm(
    () => child.dispose(),
    lanes.map((lane) => lane.sim),
    work,
  ),
);

/** Independently of the service: links, acks, batch roots and the TPM's extend value. */
async function checkLane(lane: Lane, acked: ReadonlyMap<number, string>): Promise<void> {
  const db = await openDatabase(join(lane.dir, 'db'));
  const sub = db.sublevel('audit', { valueEncoding: 'utf8' });
  const entries = (await sub.values({ gte: 'e!', lt: 'e!~' }).all()).map(
    (v) => JSON.parse(v) as unknown,
  );
  const batches = (await sub.values({ gte: 'b!', lt: 'b!~' }).all()).map(
    (v) => JSON.parse(v) as { size: number; root: string },
  );
  const tiles = await storedTiles(db);
  // The time index agrees with the entries, whatever the last kill interrupted.
  expect(await timeIndexDisagrees(db)).toBeUndefined();
  await db.close();
  // The tiles agree with the entries, whatever the last kill interrupted.
  const hashes = entries.map((e) => (isEntryShape(e) ? e.hash : ''));
  expect(tilesDisagree(tiles, expectedTiles(hashes))).toBeUndefined();
  let prev = GENESIS_PREV_HASH;
  entries.forEach((e, seq) => {
    if (!isEntryShape(e)) throw new Error(`entry ${seq} malformed`);
    expect(checkLink(e, seq, prev), `entry ${seq}`).toBeUndefined();
    prev = e.hash;
  });
  for (const [seq, hash] of acked) {
    const e = entries[seq];
    expect(isEntryShape(e) ? e.hash : undefined, `ack ${seq}`).toBe(hash);
  }
  expect(batches.at(-1)?.size ?? 0).toBe(entries.length);
  const chain: Buffer[] = [Buffer.from(GENESIS_EXTEND)];
  for (const b of batches)
    chain.push(extendDigest(chain.at(-1) ?? GENESIS_EXTEND, Buffer.from(b.root, 'hex')));
  const tpm = await NativeTpm.open(lane.sim.tcti);
  try {
    const anchored = await new TpmAuditAnchor(tpm, lane.config).read();
    // The last child may have died with its last batch stored but not yet extended: then
    // the TPM is exactly one batch behind, which the next start completes.
    const ok = chain.slice(-2).some((e) => e.equals(anchored.extendValue));
    expect(ok).toBe(true);
  } finally {
    await tpm.close();
  }
}

describe('crash consistency under SIGKILL', () => {
  it(
    `survives ${CYCLES} kills with every acknowledged append in a log that verifies`,
    async () => {
      const seed = Number(process.env.GRANTOR_CRASH_SEED ?? Date.now() % 1_000_000);
      const perLane = Math.ceil(CYCLES / LANES);
      const reports = await Promise.all(
        lanes.map((lane, i) =>
          runCrashHarness({
            child,
            cycles: perLane,
            acksFile: join(lane.dir, 'acks'),
            random: mulberry32(seed + i),
            env: {
              CRASH_DB: join(lane.dir, 'db'),
              CRASH_TCTI: lane.sim.tcti,
              CRASH_ANCHOR: JSON.stringify({
                ...lane.config,
                pinnedGenesis: lane.config.pinnedGenesis?.toString(),
                pinnedAkPublic: Buffer.from(lane.config.pinnedAkPublic ?? []).toString('base64'),
                akTemplate: Buffer.from(lane.config.akTemplate ?? []).toString('base64'),
              }),
              CRASH_CONCURRENCY: '4',
            },
            aimedKillShare: 0.5,
          }),
        ),
      );
      const kills = reports.reduce((n, r) => n + r.kills, 0);
      expect(kills, `seed ${seed}`).toBeGreaterThanOrEqual(CYCLES);
      const sum = (pick: (r: (typeof reports)[number]) => number): number =>
        reports.reduce((n, r) => n + pick(r), 0);
      const byKind = {
        early: sum((r) => r.killsByKind.early),
        load: sum((r) => r.killsByKind.load),
        stored: sum((r) => r.killsByKind.stored),
        extended: sum((r) => r.killsByKind.extended),
      };
      const starts = {
        equal: sum((r) => r.starts.equal ?? 0),
        stored_not_anchored: sum((r) => r.starts.stored_not_anchored ?? 0),
        extended_not_counted: sum((r) => r.starts.extended_not_counted ?? 0),
      };
      const summary = `seed ${seed}, kills ${JSON.stringify(byKind)}, starts ${JSON.stringify(starts)}`;
      console.info(`crash harness: ${summary}`);
      // Kills landed during start-up, under load, and at both aimed crash points.
      for (const n of Object.values(byKind)) expect(n, summary).toBeGreaterThan(0);
      // Both recovery cases (and the equal case) were hit many times, each completed.
      expect(starts.equal, summary).toBeGreaterThanOrEqual(CASE_FLOOR);
      expect(starts.stored_not_anchored, summary).toBeGreaterThanOrEqual(CASE_FLOOR);
      expect(starts.extended_not_counted, summary).toBeGreaterThanOrEqual(CASE_FLOOR);
      expect(sum((r) => r.acked.size)).toBeGreaterThan(0);
      for (const [i, lane] of lanes.entries()) await checkLane(lane, reports[i]!.acked);
    },
    120_000 + CYCLES * 2_000,
  );
});
