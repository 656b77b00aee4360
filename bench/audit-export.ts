/**
 * Issue 16's export bench: entries per second and peak RSS exporting a live evidence
 * bundle of 1,000,000 entries (`GET /v1/audit/export` on the production server while the
 * log is open) and verifying it with `grantor audit verify`'s verifier, each next to a
 * baseline measured in the same run: the export against reading and parsing the same
 * entries straight from LevelDB, the verifier against parsing and SHA-256 hashing every
 * line of the same file. Then the append rate of typed grant decisions (facts, index terms
 * and the request body in the same synced batch) against plain entries and against the raw
 * synced LevelDB batch (one entry-sized put each), at concurrency 64.
 *
 *   npx tsx bench/audit-export.ts [entries, default 1000000] [append-seconds, default 5]
 *
 * Real parts: swtpm (the anchor written through the PolicySigned write key in a SoftHSM2
 * token, reads and the bundle's NV_Certify by the pinned AK), LevelDB and the bundle file
 * under the system temp directory (deleted at the end). The log is filled as
 * bench/audit-scale.ts fills it (real append path, batches of 8192, the last 1,024 in the
 * appliance's own batches). One bundle covers at most 100,000 entries by default; the
 * bench gives the route its `maxEntries` for the whole range, so the figure is one stream.
 * Export and verify run each in a fresh process (bench/audit-probe.ts), so their peak RSS
 * is their own; the export's process also holds the HTTP client writing the file.
 * The last line is a machine-readable summary.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type {
  BaselineResult,
  ExportJob,
  ExportResult,
  HashJob,
  ReadJob,
  VerifyJob,
  VerifyResult,
} from './audit-probe.js';
import {
  decisionEvent,
  fillLog,
  mb,
  probe,
  ratio,
  rawSyncedBatchRate,
  startAuditRig,
  summaryLine,
  verifierOf,
  withLog,
  type LogSpec,
} from './audit-rig.js';
import { createHash } from 'node:crypto';

const entries = Number(process.argv[2] ?? '1000000');
const seconds = Number(process.argv[3] ?? '5');
if (!Number.isSafeInteger(entries) || entries < 2048) throw new Error('entries: at least 2048');

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** Appends per second at concurrency 64 for `seconds`, typed decisions or plain entries. */
async function appendRate(spec: LogSpec, typed: boolean): Promise<number> {
  return withLog(spec, async (audit) => {
    let running = true;
    let k = audit.treeSize() ?? 0;
    const before = audit.stats().appends;
    const start = performance.now();
    const workers = Array.from({ length: 64 }, async () => {
      while (running) {
        const n = k++;
        await audit.append(
          typed
            ? decisionEvent(n)
            : {
                type: 'bench.append',
                subject: `w_${n % 64}`,
                digest: createHash('sha256').update(String(n)).digest('hex'),
              },
        );
      }
    });
    await new Promise((r) => setTimeout(r, seconds * 1000));
    running = false;
    await Promise.all(workers);
    return (audit.stats().appends - before) / ((performance.now() - start) / 1000);
  });
}

const root = await mkdtemp(join(tmpdir(), 'grantor-bench-audit-export-'));
const rig = await startAuditRig(root, 'grantor.bench/audit-export');
try {
  console.log(`load average at start: ${load()}`);
  const filled = await fillLog(rig.spec, entries, { fillBatch: 8192, tail: 1024 });
  console.log(`filled ${filled.size} typed grant decisions at ${filled.rate.toFixed(0)} entries/s`);

  const file = join(root, 'bundle.ndjson');
  const exported = await probe<ExportResult>({
    kind: 'export',
    spec: rig.spec,
    file,
    from: 0,
    to: entries,
    maxEntries: entries,
  } satisfies ExportJob);
  const read = await probe<BaselineResult>({
    kind: 'read',
    dbPath: rig.spec.dbPath,
    from: 0,
    to: entries,
  } satisfies ReadJob);
  const verifier = await verifierOf(rig.spec);
  const verified = await probe<VerifyResult>({
    kind: 'verify',
    file,
    verifierKey: verifier.noteVerifierKey,
    pin: { names: rig.spec.names, genesis: rig.spec.genesis, akPublic: rig.spec.akPublic },
    nonce: exported.nonce,
  } satisfies VerifyJob);
  const hashed = await probe<BaselineResult>({ kind: 'hash', file } satisfies HashJob);
  if (verified.entries !== entries || !verified.nvCertified || verified.policies < 1) {
    throw new Error(`the verifier checked ${verified.entries} entries: not the bundle's`);
  }

  const raw = await rawSyncedBatchRate(join(root, 'raw'), seconds);
  const plain = await appendRate(rig.spec, false);
  const typed = await appendRate(rig.spec, true);

  const exportRate = exported.entries / exported.seconds;
  const readRate = read.items / read.seconds;
  const verifyRate = verified.entries / verified.seconds;
  const hashRate = hashed.items / hashed.seconds;
  console.log(
    `export of ${exported.entries} entries (${mb(exported.bytes)} MB bundle, ${verified.bodies} bodies, NV-certified): ${exportRate.toFixed(0)} entries/s, peak RSS ${mb(exported.peakRss)} MB (anonymous ${mb(exported.peakAnon)}, LevelDB's mapped files ${mb(exported.peakFile)}); ratio to reading them from LevelDB (${readRate.toFixed(0)}/s, peak RSS ${mb(read.peakRss)} MB, anonymous ${mb(read.peakAnon)}): ${ratio(exportRate, readRate)}`,
  );
  console.log(
    `verify: ${verifyRate.toFixed(0)} entries/s, peak RSS ${mb(verified.peakRss)} MB (anonymous ${mb(verified.peakAnon)}); ratio to parsing and hashing its ${hashed.items} lines (${hashRate.toFixed(0)}/s, peak RSS ${mb(hashed.peakRss)} MB, anonymous ${mb(hashed.peakAnon)}): ${ratio(verifyRate, hashRate)}`,
  );
  console.log(
    `appends/s at concurrency 64: typed grant decisions ${typed.toFixed(0)}, plain entries ${plain.toFixed(0)}, raw synced LevelDB batches ${raw.toFixed(0)}; typed/raw ${ratio(typed, raw)}, typed/plain ${ratio(typed, plain)}`,
  );
  console.log(`load average at end: ${load()}`);
  console.log(
    summaryLine('audit-export', {
      entries,
      export_per_s: exportRate,
      export_peak_rss_mb: exported.peakRss / 2 ** 20,
      export_peak_anon_mb: exported.peakAnon / 2 ** 20,
      export_vs_read: ratio(exportRate, readRate),
      verify_per_s: verifyRate,
      verify_peak_rss_mb: verified.peakRss / 2 ** 20,
      verify_peak_anon_mb: verified.peakAnon / 2 ** 20,
      verify_vs_hash: ratio(verifyRate, hashRate),
      typed_vs_raw: ratio(typed, raw),
      typed_vs_plain: ratio(typed, plain),
    }),
  );
} finally {
  await rig.close();
  await rm(root, { recursive: true, force: true });
}
