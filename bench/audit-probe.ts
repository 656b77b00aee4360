/**
 * One measurement of the audit benches in its own process (forked by bench/audit-rig.ts
 * `probe`), so that its RSS and peak RSS are the measurement's alone. It takes one job by
 * IPC, answers `{ ok, result }` and exits. Jobs:
 *
 * - `scale`: open the log (start-up time), RSS, an untimed warm-up of proofs, inclusion and
 *   consistency proof latency at sampled positions (all of them, and those that read a
 *   stored tile apart), then the append rate at concurrency 64 (bench/audit-scale.ts);
 * - `export`: the live evidence bundle through `GET /v1/audit/export` on the production
 *   server (src/http/app.ts `createServer` with the route), streamed to a file by a
 *   client in the same process;
 * - `verify`: the verifier of `grantor audit verify` over that file;
 * - `read`: the baseline of `export`: the same entries read from LevelDB and parsed;
 * - `hash`: the baseline of `verify`: every line of the file parsed and SHA-256 hashed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { AuditStore } from '../src/audit/audit-store.port.js';
import { parseVerifierKey } from '../src/audit/checkpoint.js';
import { verifyBundle } from '../src/audit/verify-bundle.js';
import { createServer } from '../src/http/app.js';
import { auditExportRoutes } from '../src/http/routes/audit-export.js';
import { openDatabase } from '../src/shared/db.level.js';
import { mulberry32 } from '../test/rig/prng.js';
import { BENCH_POLICY_SET, decisionEvent, withLog, type LogSpec } from './audit-rig.js';

export interface ScaleJob {
  readonly kind: 'scale';
  readonly spec: LogSpec;
  /**
   * Proofs of each kind that read a stored tile to time (positions from a fixed seed: the
   * same fractions at every size). Proofs are drawn until each kind has this many (at most
   * `MAX_DRAWS_PER_READ` draws per sample), so the judged figures rest on the same number
   * of samples at every size, however much the tile cache serves.
   */
  readonly proofs: number;
  /** Untimed inclusion proofs before the timed ones (the same at every size). */
  readonly warmup: number;
  readonly appendSeconds: number;
}
export interface ScaleResult {
  readonly size: number;
  /** This probe's start-up, ms (one sample; bench/audit-scale.ts judges alternated ones). */
  readonly startMs: number;
  /** RSS right after the start-up check, bytes. */
  readonly rssStarted: number;
  /** Peak RSS of the process (start-up, proofs, appends), bytes. */
  readonly peakRss: number;
  readonly peakAnon: number;
  readonly peakFile: number;
  /** Every timed proof, as served: from the tile cache or reading stored tiles. */
  readonly inclusion: Latency;
  readonly consistency: Latency;
  /** Only the proofs that read at least one stored tile (the tile cache missed). */
  readonly inclusionRead: Latency;
  readonly consistencyRead: Latency;
  /** Share of the timed proofs served from memory alone (no stored tile read). */
  readonly fromMemory: number;
  readonly appendRate: number;
  /** Stored tiles read (cache misses of the tiled tree) per proof, and ms spent reading them. */
  readonly tileReadsPerProof: number;
  readonly tileReadMsPerProof: number;
  /** LevelDB's own `leveldb.stats` after the proofs (files and MB per level). */
  readonly levelStats: string;
}
export interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  /** Samples. */
  readonly n: number;
}

/** One timed proof: its latency and whether it read a stored tile. */
interface Sample {
  readonly ms: number;
  readonly read: boolean;
}

export interface ExportJob {
  readonly kind: 'export';
  readonly spec: LogSpec;
  readonly file: string;
  readonly from: number;
  readonly to: number;
  readonly maxEntries: number;
}
export interface ExportResult {
  readonly entries: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly peakRss: number;
  readonly peakAnon: number;
  readonly peakFile: number;
  readonly nonce: string;
}

export interface VerifyJob {
  readonly kind: 'verify';
  readonly file: string;
  readonly verifierKey: string;
  readonly pin: { names: { counter: string; extend: string }; genesis: string; akPublic: string };
  readonly nonce: string;
}
export interface VerifyResult {
  readonly entries: number;
  readonly bodies: number;
  readonly policies: number;
  readonly nvCertified: boolean;
  readonly seconds: number;
  readonly peakRss: number;
  readonly peakAnon: number;
  readonly peakFile: number;
}

export interface ReadJob {
  readonly kind: 'read';
  readonly dbPath: string;
  readonly from: number;
  readonly to: number;
}
export interface HashJob {
  readonly kind: 'hash';
  readonly file: string;
}
export interface BaselineResult {
  readonly items: number;
  readonly seconds: number;
  readonly peakRss: number;
  readonly peakAnon: number;
  readonly peakFile: number;
}

/** One start-up of the log, timed (bench/audit-scale.ts alternates them between two logs). */
export interface StartJob {
  readonly kind: 'start';
  readonly spec: LogSpec;
}

export interface StartResult {
  readonly ms: number;
  /** The TPM connected, the token's library loaded, LevelDB opened. */
  readonly openMs: number;
  /** `AuditService.ready()`: the start-up check and the certified anchor read. */
  readonly readyMs: number;
}

export type ProbeJob = ScaleJob | ExportJob | VerifyJob | ReadJob | HashJob | StartJob;

/**
 * RSS splits into anonymous memory (heaps, buffers) and file pages: LevelDB maps its table
 * files (up to 1,000 on 64-bit), so every page of the store it reads counts in RSS until the
 * kernel reclaims it. The peak of each, sampled from /proc/self/status every 20 ms; the
 * total peak is the kernel's own high-water mark of this process's memory (`VmHWM`), not
 * getrusage's ru_maxrss: Linux carries the parent's high-water mark at the fork into the
 * child's, so a probe forked by a bench that had filled a large log reported the bench's
 * peak as its own.
 */
const rssPeaks = { anon: 0, file: 0, total: 0 };
function peaks(): { peakRss: number; peakAnon: number; peakFile: number } {
  sampleRss();
  return { peakRss: rssPeaks.total, peakAnon: rssPeaks.anon, peakFile: rssPeaks.file };
}
function sampleRss(): void {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024;
  rssPeaks.anon = Math.max(rssPeaks.anon, kb('RssAnon'));
  rssPeaks.file = Math.max(rssPeaks.file, kb('RssFile'));
  rssPeaks.total = kb('VmHWM');
}
sampleRss();
setInterval(sampleRss, 20).unref();

function latency(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
  return {
    p50: at(0.5),
    p99: at(0.99),
    mean: sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length),
    n: sorted.length,
  };
}

/** The store with its tile reads counted and timed (the tiled tree's cache misses). */
function countTileReads(counter: { reads: number; ms: number }) {
  return (store: AuditStore): AuditStore =>
    new Proxy(store, {
      get(target, property) {
        if (property === 'readTile') {
          return async (level: number, index: number) => {
            const t = performance.now();
            try {
              return await target.readTile(level, index);
            } finally {
              counter.reads += 1;
              counter.ms += performance.now() - t;
            }
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
}

/** Draws per judged sample before a probe gives up on reaching `proofs` (a log all in cache). */
const MAX_DRAWS_PER_READ = 20;

async function scale(job: ScaleJob): Promise<ScaleResult> {
  const tiles = { reads: 0, ms: 0 };
  return withLog(
    job.spec,
    async (audit, startMs, db) => {
      const rssStarted = process.memoryUsage().rss;
      const size = audit.treeSize() ?? 0;
      // Untimed warm-up, the same at every size: the upper tiles every proof needs (152
      // level-1 tiles at 10^7) are read once, as on an appliance that has served proofs for
      // a while; the level-0 cache fills as far as it can.
      const warm = mulberry32(23);
      for (let i = 0; i < job.warmup; i++) {
        await audit.inclusionProof(Math.floor(warm() * size), size);
      }
      const random = mulberry32(17);
      const readsBefore = { ...tiles };
      const inclusion: Sample[] = [];
      const consistency: Sample[] = [];
      const timed = async (proof: () => Promise<unknown>): Promise<Sample> => {
        const reads = tiles.reads;
        const t = performance.now();
        await proof();
        return { ms: performance.now() - t, read: tiles.reads > reads };
      };
      const judged = { inclusion: 0, consistency: 0 };
      for (
        let draws = 0;
        draws < MAX_DRAWS_PER_READ * job.proofs &&
        (judged.inclusion < job.proofs || judged.consistency < job.proofs);
        draws++
      ) {
        const seq = Math.floor(random() * size);
        const a = await timed(() => audit.inclusionProof(seq, size));
        const from = 1 + Math.floor(random() * (size - 1));
        const b = await timed(() => audit.consistencyProof(from, size));
        inclusion.push(a);
        consistency.push(b);
        if (a.read) judged.inclusion++;
        if (b.read) judged.consistency++;
      }
      const drawn = inclusion.length + consistency.length;
      const tileReadsPerProof = (tiles.reads - readsBefore.reads) / drawn;
      const tileReadMsPerProof = (tiles.ms - readsBefore.ms) / drawn;
      // The judged samples: the first `proofs` of each kind that read a stored tile.
      const firstReads = (samples: Sample[]): number[] =>
        samples
          .filter((x) => x.read)
          .slice(0, job.proofs)
          .map((x) => x.ms);
      const levelStats = db.getProperty('leveldb.stats');
      let running = true;
      let k = size;
      const before = audit.stats().appends;
      const start = performance.now();
      const workers = Array.from({ length: 64 }, async () => {
        while (running) await audit.append(decisionEvent(k++));
      });
      await new Promise((r) => setTimeout(r, job.appendSeconds * 1000));
      running = false;
      await Promise.all(workers);
      const appendRate = (audit.stats().appends - before) / ((performance.now() - start) / 1000);
      return {
        size,
        startMs,
        rssStarted,
        ...peaks(),
        inclusion: latency(inclusion.map((x) => x.ms)),
        consistency: latency(consistency.map((x) => x.ms)),
        inclusionRead: latency(firstReads(inclusion)),
        consistencyRead: latency(firstReads(consistency)),
        fromMemory: [...inclusion, ...consistency].filter((x) => !x.read).length / drawn,
        appendRate,
        tileReadsPerProof,
        tileReadMsPerProof,
        levelStats,
      };
    },
    undefined,
    countTileReads(tiles),
  );
}

async function exportBundle(job: ExportJob): Promise<ExportResult> {
  return withLog(job.spec, async (audit) => {
    const app = createServer();
    await app.register(auditExportRoutes, {
      audit,
      policySet: (hash) =>
        Promise.resolve(hash === BENCH_POLICY_SET.hash ? BENCH_POLICY_SET : undefined),
      maxEntries: job.maxEntries,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as AddressInfo;
      const nonce = randomBytes(32).toString('hex');
      const start = performance.now();
      const res = await fetch(
        `http://127.0.0.1:${port}/v1/audit/export?from=${job.from}&to=${job.to}&nonce=${nonce}`,
      );
      if (res.status !== 200 || res.body === null) {
        throw new Error(`export answered ${res.status}: ${await res.text()}`);
      }
      let bytes = 0;
      const counted = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
      counted.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      await pipeline(counted, createWriteStream(job.file, { flags: 'wx', mode: 0o600 }));
      return {
        entries: job.to - job.from,
        bytes,
        seconds: (performance.now() - start) / 1000,
        ...peaks(),
        nonce,
      };
    } finally {
      await app.close();
    }
  });
}

async function verify(job: VerifyJob): Promise<VerifyResult> {
  const start = performance.now();
  const lines = createInterface({ input: createReadStream(job.file), crlfDelay: Infinity });
  try {
    const report = await verifyBundle(lines, {
      verifierKey: parseVerifierKey(job.verifierKey),
      pin: {
        names: job.pin.names,
        genesisCounter: BigInt(job.pin.genesis),
        akPublic: Buffer.from(job.pin.akPublic, 'base64'),
      },
      nonce: job.nonce,
    });
    return {
      entries: report.entries,
      bodies: report.bodies,
      policies: report.policies,
      nvCertified: report.nvCertified,
      seconds: (performance.now() - start) / 1000,
      ...peaks(),
    };
  } finally {
    lines.close();
  }
}

async function read(job: ReadJob): Promise<BaselineResult> {
  const db = await openDatabase(job.dbPath);
  try {
    const sub = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const key = (n: number): string => `e!${n.toString().padStart(16, '0')}`;
    const start = performance.now();
    let items = 0;
    for await (const value of sub.values({ gte: key(job.from), lt: key(job.to) })) {
      JSON.parse(value);
      items++;
    }
    return { items, seconds: (performance.now() - start) / 1000, ...peaks() };
  } finally {
    await db.close();
  }
}

async function hash(job: HashJob): Promise<BaselineResult> {
  const start = performance.now();
  const lines = createInterface({ input: createReadStream(job.file), crlfDelay: Infinity });
  let items = 0;
  for await (const l of lines) {
    JSON.parse(l);
    createHash('sha256').update(l).digest();
    items++;
  }
  return { items, seconds: (performance.now() - start) / 1000, ...peaks() };
}

function run(job: ProbeJob): Promise<unknown> {
  switch (job.kind) {
    case 'scale':
      return scale(job);
    case 'export':
      return exportBundle(job);
    case 'verify':
      return verify(job);
    case 'read':
      return read(job);
    case 'hash':
      return hash(job);
    case 'start':
      return withLog(job.spec, (_audit, ms, _db, phases) =>
        Promise.resolve<StartResult>({ ms, ...phases }),
      );
  }
}

process.once('message', (job: ProbeJob) => {
  run(job).then(
    (result) => {
      process.send?.({ ok: true, result }, () => process.exit(0));
    },
    (e: unknown) => {
      const error =
        e instanceof Error
          ? `${e.message}${e.cause instanceof Error ? `: ${e.cause.message}` : ''}`
          : String(e);
      process.send?.({ ok: false, error }, () => process.exit(1));
    },
  );
});
