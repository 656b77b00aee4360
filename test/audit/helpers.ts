/** Shared pieces of the audit integration tests: a real LevelDB store, the real TPM anchor. */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import type { TpmAnchorConfig, TpmAnchorIndices } from '../../src/audit/anchor.tpm.js';
import { TpmAuditAnchor, provisionTpmAnchor } from '../../src/audit/anchor.tpm.js';
import type { AuditStore } from '../../src/audit/audit-store.port.js';
import type { AuditEvent } from '../../src/audit/entry.js';
import type { AnchoredHead, AuditLogOptions } from '../../src/audit/log.js';
import type { DomainLogger } from '../../src/shared/log.js';
import { AuditLog } from '../../src/audit/log.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { marshalTpmtPublic } from '../../src/tpm/marshal/public.js';
import { APPLIANCE_AK_TEMPLATE } from '../../src/tpm/templates.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import type { TpmPort } from '../../src/tpm/tpm.port.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';

export const INDICES: TpmAnchorIndices = { counterIndex: 0x01500020, extendIndex: 0x01500021 };
export const AK_TEMPLATE = marshalTpmtPublic(APPLIANCE_AK_TEMPLATE);

export const LOG_OPTIONS: AuditLogOptions = {
  origin: 'grantor.test/audit',
  maxBatchSize: 256,
  minAnchorIntervalMs: 0,
  anchorRetryDeadlineMs: 2000,
};

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function provisionAnchor(
  tpm: TpmPort,
  indices: TpmAnchorIndices = INDICES,
): Promise<TpmAnchorConfig> {
  const pin = await provisionTpmAnchor(tpm, indices);
  const config = {
    ...indices,
    pinnedNames: pin.names,
    pinnedGenesis: pin.genesisCounter,
    akTemplate: AK_TEMPLATE,
  };
  // Pinned as provisioning pins it: every anchor read is then a certified one.
  const pinnedAkPublic = await new TpmAuditAnchor(tpm, config).akPublic();
  return pinnedAkPublic === undefined ? config : { ...config, pinnedAkPublic };
}

/** provisionAnchor on the TPM behind `tcti`, through a facade opened for it alone. */
export async function provisionAnchorAt(
  tcti: string,
  indices: TpmAnchorIndices = INDICES,
): Promise<TpmAnchorConfig> {
  const tpm = await NativeTpm.open(tcti);
  try {
    return await provisionAnchor(tpm, indices);
  } finally {
    await tpm.close();
  }
}

/** A swtpm test file's beforeAll: a swtpm, the TPM facade over it and a work folder. */
export async function startTpmFile(
  prefix: string,
): Promise<{ sim: SimTpm; tpm: NativeTpm; work: string }> {
  const sim = await startSimTpm();
  return { sim, tpm: await NativeTpm.open(sim.tcti), work: await tempDir(prefix) };
}

/** A swtpm test file's pieces, set in its beforeAll (read them in hooks and tests). */
export interface TpmFile {
  readonly sim: SimTpm;
  /** The facade over `sim`; a test that closes it opens the next one here (closed afterAll). */
  tpm: NativeTpm;
  readonly work: string;
  /** The anchor provisioned at the indices given to useTpmFile. */
  readonly config: TpmAnchorConfig;
}

/**
 * Registers a swtpm test file's beforeAll (startTpmFile, then the anchor at `indices`
 * unless null) and afterAll (tearDownTpm).
 */
export function useTpmFile(prefix: string, indices: TpmAnchorIndices | null = INDICES): TpmFile {
  let started: { sim: SimTpm; tpm: NativeTpm; work: string } | undefined;
  let config: TpmAnchorConfig | undefined;
  const get = (): { sim: SimTpm; tpm: NativeTpm; work: string } => {
    if (started === undefined) throw new Error('useTpmFile: read before its beforeAll ran');
    return started;
  };
  beforeAll(async () => {
    started = await startTpmFile(prefix);
    if (indices !== null) config = await provisionAnchor(started.tpm, indices);
  });
  afterAll(async () => {
    const { sim, work } = get();
    await tearDownTpm(() => get().tpm.close(), [sim], work);
  });
  return {
    get sim() {
      return get().sim;
    },
    get tpm() {
      return get().tpm;
    },
    set tpm(tpm: NativeTpm) {
      get().tpm = tpm;
    },
    get work() {
      return get().work;
    },
    get config() {
      if (config === undefined) throw new Error(`useTpmFile(${prefix}): no anchor provisioned`);
      return config;
    },
  };
}

/**
 * A swtpm test file's afterAll: `first` (close the TPM facade, a proxy or a child), then
 * every swtpm, then the work folder; swtpm is stopped even when set-up failed half-way.
 */
export async function tearDownTpm(
  first: () => Promise<void>,
  sims: readonly SimTpm[],
  work: string,
): Promise<void> {
  try {
    await first();
  } finally {
    for (const sim of sims) await sim.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

export function event(i: number): AuditEvent {
  return {
    type: 'grant.decision',
    subject: `rt_${i}`,
    decision: i % 3 === 0 ? 'deny' : 'allow',
    digest: createHash('sha256').update(`request ${i}`).digest('hex'),
  };
}

export interface OpenedLog {
  readonly db: Database;
  readonly log: AuditLog;
  close(): Promise<void>;
}

/** A log over a LevelDB folder and the real anchor; open() is NOT called. */
export async function logAt(
  path: string,
  tpm: TpmPort,
  config: TpmAnchorConfig,
  options: Partial<AuditLogOptions> = {},
  logger?: DomainLogger,
): Promise<OpenedLog> {
  const db = await openDatabase(path);
  const log = new AuditLog(
    new LevelAuditStore(db),
    new TpmAuditAnchor(tpm, config),
    { ...LOG_OPTIONS, ...options },
    undefined,
    logger,
  );
  return {
    db,
    log,
    close: async () => {
      await log.close();
      await db.close();
    },
  };
}

/**
 * The rollback scene: a log at `work/live` with 1 entry, copied to `work/backup`, then
 * grown to `size` entries, one batch each. `atBackup` runs right after the copy (to read
 * the anchor the backup matches). Resolves to the live log's head.
 */
export async function backupBehindLive(
  work: string,
  tpm: TpmPort,
  config: TpmAnchorConfig,
  size: number,
  atBackup?: () => Promise<void>,
): Promise<AnchoredHead> {
  const live = await logAt(join(work, 'live'), tpm, config);
  await live.log.provision();
  await live.log.open();
  await live.log.append(event(0));
  await live.close();
  await cp(join(work, 'live'), join(work, 'backup'), { recursive: true });
  await atBackup?.();
  const again = await logAt(join(work, 'live'), tpm, config);
  try {
    await again.log.open();
    for (let i = 1; i < size; i++) await again.log.append(event(i));
    return again.log.head();
  } finally {
    await again.close();
  }
}

export function captureLogger(): DomainLogger & { lines: { obj: object; msg: string }[] } {
  const lines: { obj: object; msg: string }[] = [];
  const push = (obj: object, msg: string): void => {
    lines.push({ obj, msg });
  };
  return { lines, info: push, warn: push, error: push };
}

/** A store that forwards every call to `inner`, except the ones `over` replaces. */
export function storeWith(inner: AuditStore, over: Partial<AuditStore> = {}): AuditStore {
  return {
    readMeta: () => inner.readMeta(),
    writeMeta: (meta) => inner.writeMeta(meta),
    readEntries: (from, limit) => inner.readEntries(from, limit),
    readBatches: (from) => inner.readBatches(from),
    appendBatch: (write) => inner.appendBatch(write),
    lastBatches: (count) => inner.lastBatches(count),
    readTile: (level, index) => inner.readTile(level, index),
    writeDerived: (tiles, batches, meta) => inner.writeDerived(tiles, batches, meta),
    scanIndex: (term, from, limit) => inner.scanIndex(term, from, limit),
    indexedFrom: () => inner.indexedFrom(),
    firstTimeRise: (time) => inner.firstTimeRise(time),
    timeStepBacks: (since, until, limit) => inner.timeStepBacks(since, until, limit),
    buildIndexes: (progress) => inner.buildIndexes(progress),
    readBody: (digest) => inner.readBody(digest),
    deleteRetired: (keepBelow, limit) => inner.deleteRetired(keepBelow, limit),
    close: () => inner.close(),
    ...over,
  };
}
