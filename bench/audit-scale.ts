/**
 * Issue 17's scale bench: RSS, start-up time, append rate and proof latency (inclusion and
 * consistency) of the audit log at 10^5, 10^6 and 10^7 entries in one run, each figure at
 * the largest size printed as a ratio to the same figure at the smallest (target: within
 * 1.5x). Real parts as the appliance runs them: swtpm anchor written through the
 * PolicySigned write key in a SoftHSM2 token, every anchor read certified by the pinned AK,
 * LevelDB under the system temp directory (deleted at the end).
 *
 *   npx tsx bench/audit-scale.ts [sizes, default 100000,1000000,10000000]
 *       [append-seconds, default 5] [proofs, default 2000] [record-size, default 32768]
 *
 * The log is filled by bench/audit-fill.ts `directFill`: typed grant decisions as the grant
 * pipeline writes them (each with its own request body, index terms and tiles), written in
 * the store's own format by the production code in large LevelDB batches, one batch record
 * of `record-size` entries per TPM anchor (NV_Extend + NV_Increment through the write key),
 * so that 10^7 entries take minutes and not the hours of the real append path on this
 * machine (test/audit/bench-fill.test.ts proves the result passes start-up and verify
 * --full). The last 1,024 entries before each measurement are appended through the real
 * path (AuditService.append) in the appliance's own batches, so the start-up check
 * re-hashes a batch of the usual size.
 *
 * The ratios compare the largest size with a baseline log of the smallest size (its own
 * swtpm, token and store, filled once) probed again right after each probe of the growing
 * log: the two probes of a ratio run a minute apart under the same load, not an hour apart
 * (on a shared 2-core machine the load an hour later is another machine's).
 *
 * Each size is measured in a fresh process (bench/audit-probe.ts): the start-up time
 * (opening the TPM, the token and LevelDB, the bounded start-up check and the certified
 * anchor read), RSS after it, an
 * untimed warm-up of 1,000 inclusion proofs (the same at every size), then inclusion and
 * consistency proofs at positions drawn from a fixed seed (the same fractions of the log at
 * every size, from the tiles) until `proofs` of each kind have read a stored tile, then appends at concurrency 64 for
 * `append-seconds` with the appliance's batch size and no minimum anchor interval, and the
 * process's peak RSS (its own high-water mark, VmHWM: getrusage's would include the bench's
 * own peak, inherited at the fork). The start-up time judged is the median of five starts
 * of the log alternated with five of the baseline, each in a process of its own: one start
 * is a few hundred ms, mostly the TPM and the token, so one sample is the machine's mood.
 * The last line is a machine-readable summary.
 *
 * The target judges the process's own memory: RSS after start and the peak of the
 * anonymous part. The total peak RSS and the peak of the mapped-file part are printed
 * beside it but not judged: LevelDB maps its table files, so the pages of the store a probe
 * reads count in RSS, grow with the store, and are dropped by the kernel at will.
 *
 * Proof latency is judged on the proofs that read a stored tile (the tile cache missed), at
 * every size: that is the work a proof costs when its tiles are not in memory, compared
 * like with like. The latency of all proofs is printed beside it, not judged, with the
 * share served from memory alone: the tile cache is bounded (256 tiles a level), so it
 * holds two thirds of the level-0 tiles at 10^5 and under 1% at 10^7, and a figure over
 * all proofs at random positions compares mostly cache hits at 10^5 with mostly store
 * reads at 10^7; no bounded memory can keep that share whatever the log's size.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { directFill } from './audit-fill.js';
import type { ScaleJob, ScaleResult, StartJob, StartResult } from './audit-probe.js';
import {
  fillLog,
  mb,
  probe,
  ratio,
  startAuditRig,
  summaryLine,
  type LogSpec,
} from './audit-rig.js';

const sizes = (process.argv[2] ?? '100000,1000000,10000000').split(',').map(Number);
const appendSeconds = Number(process.argv[3] ?? '5');
const proofs = Number(process.argv[4] ?? '2000');
const recordSize = Number(process.argv[5] ?? '32768');
/** Untimed proofs before the timed ones, at every size. */
const WARMUP = 1000;
/** GRANTOR_BENCH_FILL_UNTIL (ISO time): stop filling there and measure the size reached. */
const until = process.env.GRANTOR_BENCH_FILL_UNTIL;
const deadline = until === undefined ? undefined : Date.parse(until);
if (deadline !== undefined && Number.isNaN(deadline))
  throw new Error('GRANTOR_BENCH_FILL_UNTIL: an ISO time');
if (sizes.some((n, i) => !Number.isSafeInteger(n) || n < 2048 || n <= (sizes[i - 1] ?? 0))) {
  throw new Error('sizes: increasing integers of at least 2048');
}

const TARGET = 1.5;

/**
 * GRANTOR_BENCH_QUIET_LOAD=L: before the last size's probe, wait (up to
 * GRANTOR_BENCH_QUIET_WAIT_S seconds, default 900; a minute at most before the other sizes)
 * until the 1-minute load average is below L, so that a probe
 * measured minutes or an hour after the first one does not run in someone else's build.
 * The load at each probe is printed either way.
 */
const quietLoad = Number(process.env.GRANTOR_BENCH_QUIET_LOAD ?? 'NaN');
const quietWaitMs = 1000 * Number(process.env.GRANTOR_BENCH_QUIET_WAIT_S ?? '900');
async function waitForQuiet(waitMs: number): Promise<string> {
  const since = Date.now();
  while (Number.isFinite(quietLoad) && (loadavg()[0] ?? 0) >= quietLoad) {
    if (Date.now() - since >= waitMs) break;
    await new Promise((r) => setTimeout(r, 5000));
  }
  const waited =
    Date.now() - since >= 5000
      ? ` after ${((Date.now() - since) / 1000).toFixed(0)} s of waiting`
      : '';
  return `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}${waited}`;
}

/** Two decimals; `n/a` for a figure without samples (NaN, null once sent over IPC). */
const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

function diskBytes(path: string): number {
  return Number(execFileSync('du', ['-sb', path], { encoding: 'utf8' }).split('\t')[0]);
}

const root = await mkdtemp(join(tmpdir(), 'grantor-bench-audit-scale-'));
const rig = await startAuditRig(join(root, 'log'), 'grantor.bench/audit-scale');
// The baseline: a second log (its own swtpm, token and store) filled once to the smallest
// size and probed again right after every probe of the growing log, so that each ratio
// compares two probes a minute apart, under the same load, and not probes an hour apart.
const base = await startAuditRig(
  join(root, 'baseline'),
  'grantor.bench/audit-scale-baseline',
).catch(async (e: unknown) => {
  await rig.close();
  throw e;
});
const rows: { result: ScaleResult; baseline: ScaleResult; fillRate: number; disk: number }[] = [];
const p = (l: { p50: number; p99: number }): string => `${fmt(l.p50)}/${fmt(l.p99)}`;
function report(label: string, r: ScaleResult, fill: string): void {
  console.log(
    `${label}${r.size} entries: start ${r.startMs.toFixed(0)} ms (in the probe), RSS after start ${mb(r.rssStarted)} MB, peak RSS ${mb(r.peakRss)} MB (anonymous ${mb(r.peakAnon)}, mapped files ${mb(r.peakFile)}), appends ${r.appendRate.toFixed(0)}/s${fill}`,
  );
  console.log(
    `    proofs reading a stored tile: inclusion p50/p99 ${p(r.inclusionRead)} ms (${r.inclusionRead.n}), consistency ${p(r.consistencyRead)} ms (${r.consistencyRead.n}); all proofs: inclusion ${p(r.inclusion)} ms, consistency ${p(r.consistency)} ms, ${(100 * r.fromMemory).toFixed(1)}% from memory alone; tile reads per proof ${r.tileReadsPerProof.toFixed(2)} (${r.tileReadMsPerProof.toFixed(2)} ms)`,
  );
}
const fillTo = (spec: LogSpec, size: number) => {
  let shown = 0;
  return fillLog(spec, size, {
    fillBatch: 512,
    bulk: (s, target, options) => directFill(s, target, { ...options, recordSize }),
    tail: 1024,
    ...(deadline === undefined ? {} : { until: deadline }),
    progress: (n) => {
      if (n - shown >= 1_000_000) {
        shown = n;
        process.stderr.write(`  filled ${n}\n`);
      }
    },
  });
};
/** Start-ups per log and size, alternated between the two logs. */
const STARTS = 5;
const startOf = (spec: LogSpec): StartJob => ({ kind: 'start', spec });
function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}
const jobOf = (spec: LogSpec): ScaleJob => ({
  kind: 'scale',
  spec,
  proofs,
  warmup: WARMUP,
  appendSeconds,
});
try {
  console.log(
    `load average at start: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const baseSize = sizes[0] ?? 0;
  await fillTo(base.spec, baseSize);
  for (const size of sizes) {
    const filled = await fillTo(rig.spec, size);
    const fillRate = filled.rate;
    if (filled.size < size) {
      console.log(
        `the deadline stopped the fill at ${filled.size} of ${size} entries: measured there`,
      );
    }
    const disk = diskBytes(rig.spec.dbPath);
    // The whole wait before the last size (the ratios' probe); a minute at most before others.
    const wait = size === sizes.at(-1) ? quietWaitMs : Math.min(quietWaitMs, 60_000);
    console.log(`probing ${filled.size} entries at ${await waitForQuiet(wait)}`);
    const result = await probe<ScaleResult>(jobOf(rig.spec));
    report('', result, ` (filled at ${fillRate.toFixed(0)} entries/s, ${mb(disk)} MB on disk)`);
    console.log(result.levelStats.trim().replace(/^/gm, '    '));
    const baseline = await probe<ScaleResult>(jobOf(base.spec));
    report('  baseline, probed next: ', baseline, ` (load ${loadavg()[0]?.toFixed(2)})`);
    // Start-up, judged on STARTS starts of each log in alternation (a process each), so that
    // both see the same minutes: one start is a few hundred ms, mostly the TPM and the token.
    const starts = { log: [] as StartResult[], baseline: [] as StartResult[] };
    for (let i = 0; i < STARTS; i++) {
      starts.log.push(await probe<StartResult>(startOf(rig.spec)));
      starts.baseline.push(await probe<StartResult>(startOf(base.spec)));
    }
    const show = (xs: StartResult[]): string =>
      `median ${median(xs.map((x) => x.ms)).toFixed(0)} ms (${xs.map((x) => `${x.ms.toFixed(0)} = open ${x.openMs.toFixed(0)} + ready ${x.readyMs.toFixed(0)}`).join(', ')})`;
    console.log(
      `  start-up, alternating: ${filled.size} entries ${show(starts.log)}; baseline ${show(starts.baseline)}`,
    );
    rows.push({
      result: { ...result, startMs: median(starts.log.map((x) => x.ms)) },
      baseline: { ...baseline, startMs: median(starts.baseline.map((x) => x.ms)) },
      fillRate,
      disk,
    });
    if (filled.size < size) break;
  }
  // The largest size against the baseline probed right after it (same size as the first).
  const first = rows.at(-1)?.baseline;
  const last = rows.at(-1)?.result;
  if (first !== undefined && last !== undefined && rows.length > 1) {
    // Costs may grow at most 1.5x; the append rate may fall at most to 1/1.5. The total peak
    // RSS is printed but not judged: it counts the pages of LevelDB's mapped table files,
    // which grow with the store read and which the kernel drops at will; the process's own
    // memory is its anonymous part (peak_anon), which is judged. Proof latency is judged on
    // the proofs that read a stored tile (like with like at every size); over all proofs it
    // is printed, not judged: the bounded tile cache serves a share that falls with the size.
    const figures: [string, number, number, 'cost' | 'rate' | 'shown'][] = [
      ['start_ms', last.startMs, first.startMs, 'cost'],
      ['rss_started', last.rssStarted, first.rssStarted, 'cost'],
      ['peak_rss', last.peakRss, first.peakRss, 'shown'],
      ['peak_file', last.peakFile, first.peakFile, 'shown'],
      ['peak_anon', last.peakAnon, first.peakAnon, 'cost'],
      ['inclusion_read_p50', last.inclusionRead.p50, first.inclusionRead.p50, 'cost'],
      ['inclusion_read_p99', last.inclusionRead.p99, first.inclusionRead.p99, 'cost'],
      ['consistency_read_p50', last.consistencyRead.p50, first.consistencyRead.p50, 'cost'],
      ['consistency_read_p99', last.consistencyRead.p99, first.consistencyRead.p99, 'cost'],
      ['inclusion_p50', last.inclusion.p50, first.inclusion.p50, 'shown'],
      ['inclusion_p99', last.inclusion.p99, first.inclusion.p99, 'shown'],
      ['consistency_p50', last.consistency.p50, first.consistency.p50, 'shown'],
      ['consistency_p99', last.consistency.p99, first.consistency.p99, 'shown'],
      ['append_rate', last.appendRate, first.appendRate, 'rate'],
    ];
    console.log(
      `ratios ${last.size} / ${first.size} entries (target: costs <= ${TARGET}, append rate >= ${(1 / TARGET).toFixed(2)}):`,
    );
    const summary: Record<string, string> = {};
    let missed = 0;
    for (const [name, value, base, kind] of figures) {
      const q = Number.isFinite(value) && base > 0 ? value / base : Number.NaN;
      const met =
        kind === 'shown' ||
        (Number.isFinite(q) && (kind === 'cost' ? q <= TARGET : q >= 1 / TARGET));
      if (!met) missed++;
      summary[name] = ratio(value, base);
      const why = name.startsWith('peak_')
        ? 'mapped table files'
        : `all proofs; from memory alone ${(100 * first.fromMemory).toFixed(0)}% -> ${(100 * last.fromMemory).toFixed(0)}%`;
      const verdict = kind === 'shown' ? `not judged (${why})` : met ? 'met' : 'NOT met';
      console.log(`  ${name.padEnd(20)} ${ratio(value, base).padStart(6)}  ${verdict}`);
    }
    console.log(
      `load average at end: ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    console.log(
      summaryLine('audit-scale', { small: first.size, large: last.size, ...summary, missed }),
    );
  }
} finally {
  await rig.close();
  await base.close();
  await rm(root, { recursive: true, force: true });
}
