/**
 * Retention without loss of proof (issue 17 item 4, docs/audit.md "Retention"): a frozen
 * period's entries are moved out of the appliance into an evidence bundle, verified with
 * the auditor's verifier before anything is deleted, while its tiles, batch records, final
 * checkpoint and the next period's link stay, so inclusion and consistency proofs still
 * answer for every retired entry.
 *
 * The act, in order: export the period (bundle.ts, its chain to the certified current
 * checkpoint) to a new file, synced; verify that file (verify-bundle.ts, with the pinned
 * key, the anchor pin and the nonce); record the act as an entry of the current period
 * (`audit.period.retired`); write the retirement record (`deleting`); delete in synced
 * chunks; mark it `done`. A crash while deleting leaves the record `deleting`: start-up
 * accepts the period (its entries are retired) and the next retire of it finishes. A crash
 * after the act's entry and before the record leaves an act without a record: the next
 * retire finds that entry and its bundle file (by digest) and goes on from there, so one
 * retirement is one act (if the file is gone, nothing was deleted yet: it exports again).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Clock } from '../shared/clock.js';
import { openBundle, type BundlePolicySet } from './bundle.js';
import { parseVerifierKey } from './checkpoint.js';
import {
  AuditEntriesRetiredError,
  AuditPeriodCurrentError,
  AuditPeriodNotFoundError,
  AuditPeriodRetiredError,
  AuditRetireBundleInvalidError,
  AuditUnavailableError,
  BundleInvalidError,
} from './errors.js';
import type { AuditEntry } from './entry.js';
import type { PeriodStore } from './period-store.port.js';
import { isPeriodNumber } from './periods.js';
import type { AuditService, LogService } from './service.js';
import { verifyBundle, type BundleTrust } from './verify-bundle.js';
import { overlay } from '../shared/overlay.js';

/** The entry type recording a retirement (facts.ts `PeriodRetiredFacts`). */
export const PERIOD_RETIRED = 'audit.period.retired';

export interface RetentionConfig {
  /** Where retirement bundles are written (operators copy them off the appliance). */
  readonly dir: string;
  /** The anchor pin provisioning wrote; without one the TPM evidence is not checked. */
  readonly pin?: BundleTrust['pin'];
  /** Keys deleted per synced write (default 1000). */
  readonly chunk?: number;
  /** Called after each synced deletion (the crash test kills the process there). */
  readonly afterChunk?: (deleted: number) => void;
}

/** What the registry keeps of a retired period (`r!<n>` beside its record). */
export interface RetirementRecord {
  readonly period: number;
  /** The first seq deleted (1 for a later period: its link entry stays) and the size. */
  readonly from: number;
  readonly to: number;
  /** SHA-256 of the bundle file, hex. */
  readonly bundleDigest: string;
  /** The bundle's file name in the retention folder. */
  readonly file: string;
  readonly retiredAt: string;
  readonly actor: string;
  readonly state: 'deleting' | 'done';
}

const HEX32 = /^[0-9a-f]{64}$/;

export function isRetirementRecord(v: unknown, period: number): v is RetirementRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    r.period === period &&
    typeof r.from === 'number' &&
    Number.isSafeInteger(r.from) &&
    typeof r.to === 'number' &&
    Number.isSafeInteger(r.to) &&
    r.from >= 0 &&
    typeof r.bundleDigest === 'string' &&
    HEX32.test(r.bundleDigest) &&
    typeof r.file === 'string' &&
    typeof r.retiredAt === 'string' &&
    typeof r.actor === 'string' &&
    (r.state === 'deleting' || r.state === 'done')
  );
}

/** Period n's retirement record, checked; undefined when it has none. */
export async function readRetirement(
  periods: PeriodStore,
  period: number,
): Promise<RetirementRecord | undefined> {
  const raw = await periods.readRetirement(period);
  if (raw === undefined) return undefined;
  if (!isRetirementRecord(raw, period)) {
    throw new AuditUnavailableError(`the retirement record of log period ${period} is malformed`);
  }
  return raw;
}

export interface RetireRequest {
  readonly audit: AuditService;
  readonly periods: PeriodStore;
  readonly config: RetentionConfig;
  readonly clock: Clock;
  readonly policySet: (hash: string) => Promise<BundlePolicySet | undefined>;
  readonly period: number;
  readonly actor: string;
}

/** Writes the bundle of `period` to a new file, synced; its name and digest. */
async function writeBundle(
  r: RetireRequest,
  nonce: Buffer,
): Promise<{ path: string; digest: string }> {
  await mkdir(r.config.dir, { recursive: true, mode: 0o700 });
  const stamp = new Date(r.clock.now()).toISOString().replace(/[:.]/g, '-');
  const path = join(r.config.dir, `period-${r.period}-${stamp}.ndjson`);
  const partial = `${path}.partial`;
  const opened = await openBundle(
    { audit: r.audit, policySet: r.policySet, maxEntries: Number.MAX_SAFE_INTEGER },
    { period: r.period, nonce },
  );
  const hash = createHash('sha256');
  const handle = await open(partial, 'wx', 0o600);
  try {
    for await (const l of opened.lines()) {
      hash.update(l);
      await handle.write(l);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(partial, path);
  const folder = await open(r.config.dir, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
  return { path, digest: hash.digest('hex') };
}

/** The bundle file checked as an auditor checks it; throws before anything is deleted. */
async function verifyWritten(
  r: RetireRequest,
  path: string,
  nonce: Buffer,
  final: { readonly origin: string; readonly treeSize: number },
): Promise<void> {
  const { origin, treeSize: size } = final;
  const verifier = await r.audit.verifier();
  const trust: BundleTrust = {
    verifierKey: parseVerifierKey(verifier.noteVerifierKey),
    ...(r.config.pin === undefined ? { skipTpmEvidence: true } : { pin: r.config.pin }),
    nonce: nonce.toString('hex'),
  };
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  try {
    const report = await verifyBundle(lines, trust);
    if (report.origin !== origin || report.from !== 0 || report.to !== size) {
      throw new AuditRetireBundleInvalidError(
        `the bundle of log period ${r.period} does not cover entries 0..${size - 1} of ${origin}; nothing deleted`,
        { details: { file: basename(path) } },
      );
    }
  } catch (e) {
    if (e instanceof BundleInvalidError) {
      throw new AuditRetireBundleInvalidError(
        `the bundle of log period ${r.period} does not verify (${e.problem} at line ${e.line}); nothing deleted`,
        { cause: e, details: { problem: e.problem, line: e.line, file: basename(path) } },
      );
    }
    throw e;
  } finally {
    lines.close();
  }
}

/** Deletes what the record retires, chunk by chunk, then marks it done. */
async function finish(r: RetireRequest, record: RetirementRecord): Promise<RetirementRecord> {
  const store = r.periods.store(r.period);
  const chunk = r.config.chunk ?? 1000;
  for (;;) {
    const deleted = await store.deleteRetired(record.from, chunk);
    if (deleted === 0) break;
    r.config.afterChunk?.(deleted);
  }
  const done: RetirementRecord = { ...record, state: 'done' };
  await r.periods.writeRetirement(r.period, done);
  return done;
}

/**
 * The `audit.period.retired` entry of `r.period` that a crash left without its record
 * (searched from the current period back to the one after `r.period`; a retired period's
 * entries are not searched), if any.
 */
async function recordedAct(r: RetireRequest, current: number): Promise<AuditEntry | undefined> {
  const filter = { type: PERIOD_RETIRED, subject: `period:${r.period}` };
  for (let p = current; p > r.period; p--) {
    const log = await r.audit.inPeriod(p);
    let cursor: number | null = 0;
    try {
      while (cursor !== null) {
        const page = await log.query(filter, cursor, 100);
        const [act] = page.entries;
        if (act !== undefined) return act;
        cursor = page.next;
      }
    } catch (e) {
      if (!(e instanceof AuditEntriesRetiredError)) throw e;
    }
  }
  return undefined;
}

/** SHA-256 of a file, hex, streamed (a bundle holds a whole period). */
async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The record of an act recorded before a crash, when its bundle file is still there. */
async function resumeRecordedAct(
  r: RetireRequest,
  current: number,
  size: number,
): Promise<RetirementRecord | undefined> {
  const act = await recordedAct(r, current);
  const facts = act?.facts as Partial<Record<string, unknown>> | undefined;
  if (act === undefined || facts === undefined) return undefined;
  const { from, to, bundleDigest, actor } = facts;
  if (
    facts.period !== r.period ||
    typeof from !== 'number' ||
    to !== size ||
    typeof bundleDigest !== 'string' ||
    typeof actor !== 'string'
  ) {
    return undefined;
  }
  const prefix = `period-${r.period}-`;
  const names = await readdir(r.config.dir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(prefix) && n.endsWith('.ndjson')).sort()) {
    if ((await fileSha256(join(r.config.dir, name))) !== bundleDigest) continue;
    return {
      period: r.period,
      from,
      to,
      bundleDigest,
      file: name,
      retiredAt: act.time,
      actor,
      state: 'deleting',
    };
  }
  return undefined;
}

/**
 * Retires frozen period `r.period` (see the file comment). Refusals, before any change:
 * a period after the current one (`audit_period_not_found`), the current one
 * (`audit_period_current`), one retired already (`audit_period_retired`), a bundle that
 * does not verify (`audit_retire_bundle_invalid`). A period whose deletion was interrupted
 * is finished.
 */
export async function retirePeriod(r: RetireRequest): Promise<RetirementRecord> {
  if (!isPeriodNumber(r.period)) throw new AuditPeriodNotFoundError('no such log period');
  const log = await r.audit.inPeriod(r.period);
  const current = r.audit.currentPeriod();
  if (current === undefined) throw new AuditUnavailableError('audit log is not ready');
  if (r.period >= current) {
    throw new AuditPeriodCurrentError(
      `log period ${r.period} is the current one: start a new period first (POST /v1/audit/periods)`,
    );
  }
  const known = await readRetirement(r.periods, r.period);
  if (known?.state === 'done') {
    throw new AuditPeriodRetiredError(`log period ${r.period} is retired already`, {
      details: { bundleDigest: known.bundleDigest },
    });
  }
  if (known !== undefined) return finish(r, known);
  const final = await log.checkpoint();
  const size = final.treeSize;
  const resumed = await resumeRecordedAct(r, current, size);
  if (resumed !== undefined) {
    await r.periods.writeRetirement(r.period, resumed);
    return finish(r, resumed);
  }
  const nonce = randomBytes(32);
  const { path, digest } = await writeBundle(r, nonce);
  await verifyWritten(r, path, nonce, final);
  // A later period keeps its link entry (seq 0): its own link to the one before.
  const from = Math.min(r.period === 0 ? 0 : 1, size);
  await r.audit.append({
    type: PERIOD_RETIRED,
    subject: `period:${r.period}`,
    digest,
    facts: { period: r.period, from, to: size, bundleDigest: digest, actor: r.actor },
  });
  const record: RetirementRecord = {
    period: r.period,
    from,
    to: size,
    bundleDigest: digest,
    file: basename(path),
    retiredAt: new Date(r.clock.now()).toISOString(),
    actor: r.actor,
    state: 'deleting',
  };
  await r.periods.writeRetirement(r.period, record);
  return finish(r, record);
}

/**
 * A retired period's service: proofs, tiles, batches and checkpoints as before; entries
 * from `record.from` on, their bodies, queries and entry bundles answer 410
 * `audit_entries_retired` naming the bundle.
 */
export function retiredView(service: LogService, record: RetirementRecord): LogService {
  const gone = (): AuditEntriesRetiredError =>
    new AuditEntriesRetiredError(
      `the entries of log period ${record.period} from ${record.from} were retired to bundle ${record.bundleDigest}`,
      {
        details: {
          period: record.period,
          from: record.from,
          to: record.to,
          bundleDigest: record.bundleDigest,
        },
      },
    );
  return overlay<LogService>(service, {
    entries: (from: number, limit: number) =>
      from < record.from
        ? service.entries(from, Math.min(limit, record.from - from))
        : Promise.reject(gone()),
    query: () => Promise.reject(gone()),
    body: () => Promise.reject(gone()),
    tlogResource: (request: Parameters<LogService['tlogResource']>[0]) =>
      request.kind === 'entries' ? Promise.reject(gone()) : service.tlogResource(request),
  });
}
