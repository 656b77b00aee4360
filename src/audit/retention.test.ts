import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { MemoryAnchor } from './anchor.memory.js';
import type { BundlePolicySet } from './bundle.js';
import { noteVerifierKey, parseCheckpoint, parseVerifierKey, verifyNote } from './checkpoint.js';
import { rootFromPath } from '../gateway/batch.js';
import { createAudit, type AuditService } from './index.js';
import { leafHash } from './merkle.js';
import { LevelPeriodStore } from './period-store.level.js';
import { periodStoreName } from './periods.js';
import { runAuditCli } from './cli.js';
import { verifyBundle } from './verify-bundle.js';
import { overlay } from '../shared/overlay.js';
import { retirePeriod } from './retention.js';
import { systemClock } from '../shared/clock.js';
import { retainArchive, retainDecision, testSigner } from './testing.js';

const ORIGIN = 'grantor.test/retain';
const archive = retainArchive;
const noArchive = (): Promise<BundlePolicySet | undefined> => Promise.resolve(undefined);
const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
const event = retainDecision;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

interface Rig {
  readonly db: Database;
  readonly dir: string;
  readonly anchor: MemoryAnchor;
  readonly signer: ReturnType<typeof testSigner>;
  open(afterChunk?: () => void): Promise<AuditService>;
}

async function rig(): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-retain-'));
  const db = await openDatabase(join(dir, 'db'));
  cleanup.push(
    () => rm(dir, { recursive: true, force: true }),
    () => db.close(),
  );
  const r: Rig = {
    db,
    dir,
    anchor: new MemoryAnchor(),
    signer: testSigner(ORIGIN),
    open: async (afterChunk) => {
      const audit = createAudit(
        { origin: ORIGIN, minAnchorIntervalMs: 0, maxBatchSize: 3 },
        {
          db,
          anchor: r.anchor,
          signer: r.signer,
          retention: {
            dir: join(dir, 'retired'),
            chunk: 4,
            ...(afterChunk === undefined ? {} : { afterChunk }),
          },
        },
      );
      cleanup.push(() => audit.close());
      await audit.provision();
      await audit.ready();
      return audit;
    },
  };
  return r;
}

/** Period 0 with 7 decisions, period 1 with the link and 3 more, period 2 current. */
async function periods(r: Rig): Promise<AuditService> {
  const audit = await r.open();
  for (let i = 0; i < 7; i++) await audit.append(event(i));
  await audit.startPeriod('alice');
  for (let i = 7; i < 10; i++) await audit.append(event(i));
  await audit.startPeriod('alice');
  return audit;
}

async function codeOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (e as { code?: string }).code,
  );
}

const rawEntries = async (db: Database, period: number): Promise<number> => {
  const sub = db.sublevel(periodStoreName(period), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  let n = 0;
  for await (const _ of sub.keys({ gte: 'e!', lt: 'e!~' })) n += 1;
  return n;
};

describe('retention of a frozen period', () => {
  it('moves its entries into a verified bundle; proofs and tiles still answer, reads are 410', async () => {
    const r = await rig();
    const audit = await periods(r);
    const frozen = await audit.inPeriod(0);
    const final = await frozen.checkpoint();

    const record = await audit.retirePeriod(0, 'olivia', archive);
    expect(record).toMatchObject({ period: 0, from: 0, to: 7, state: 'done', actor: 'olivia' });
    expect(await rawEntries(r.db, 0)).toBe(0);

    // The bundle is in the retention folder, its digest the one recorded, and it verifies.
    const [file] = await readdir(join(r.dir, 'retired'));
    expect(file).toBe(record.file);
    const text = await readFile(join(r.dir, 'retired', record.file), 'utf8');
    expect(sha(text)).toBe(record.bundleDigest);
    const key = parseVerifierKey(noteVerifierKey(r.signer.keyName, r.signer.publicKey));
    const report = await verifyBundle(text.split('\n'), {
      verifierKey: key,
      skipTpmEvidence: true,
    });
    expect(report).toMatchObject({ entries: 7, bodies: 7, policies: 1, successors: 2 });

    // Reads of retired entries name the bundle.
    const retired = await audit.inPeriod(0);
    const err = await retired.entries(2, 1).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'audit_entries_retired',
      details: { bundleDigest: record.bundleDigest, period: 0 },
    });
    expect(await codeOf(retired.body(sha(JSON.stringify({ runtimeId: 'rt_1', n: 2 }))))).toBe(
      'audit_entries_retired',
    );
    expect(await codeOf(retired.query({ subject: 'gr_2' }, 0, 10))).toBe('audit_entries_retired');
    expect(
      await codeOf(retired.tlogResource({ kind: 'entries', level: 0, index: 0, width: 7 })),
    ).toBe('audit_entries_retired');

    // The proofs still answer from the tiles: entry 3 of the bundle is in the final tree.
    const entry3 = text
      .split('\n')
      .filter((l) => l.startsWith('{"type":"entry"'))
      .map((l) => (JSON.parse(l) as { entry: { seq: number; hash: string } }).entry)
      .find((e) => e.seq === 3);
    if (entry3 === undefined) throw new Error('entry 3 not in the bundle');
    const proof = await retired.inclusionProof(3, 7);
    const root = parseCheckpoint(verifyNote(final.note, key)).root;
    const computed = rootFromPath(
      3,
      7,
      leafHash(Buffer.from(entry3.hash, 'hex')),
      proof.path.map((h) => Buffer.from(h, 'hex')),
    );
    expect(computed?.equals(root)).toBe(true);
    expect((await retired.consistencyProof(3, 7)).path.length).toBeGreaterThan(0);
    expect(
      (await retired.tlogResource({ kind: 'hashes', level: 0, index: 0, width: 7 })).length,
    ).toBe(7 * 32);

    // The act is an entry of the current period.
    const acts = await audit.query({ type: 'audit.period.retired' }, 0, 10);
    expect(acts.entries.map((e) => e.facts)).toEqual([
      { period: 0, from: 0, to: 7, bundleDigest: record.bundleDigest, actor: 'olivia' },
    ]);

    // A restart accepts the retired period, which still answers 410.
    await audit.close();
    const again = await r.open();
    expect(await codeOf((await again.inPeriod(0)).entries(0, 1))).toBe('audit_entries_retired');
    // Period 1 keeps its link entry when retired.
    const one = await again.retirePeriod(1, 'olivia', archive);
    expect(one).toMatchObject({ from: 1, to: 4 });
    expect((await (await again.inPeriod(1)).entries(0, 5)).map((e) => e.type)).toEqual([
      'audit.period.started',
    ]);
    expect(await codeOf((await again.inPeriod(1)).entries(1, 1))).toBe('audit_entries_retired');
  });

  it('refuses the current period, an unknown one, one retired already, and a bundle that does not verify (nothing deleted)', async () => {
    const r = await rig();
    const audit = await periods(r);
    expect(await codeOf(audit.retirePeriod(2, 'olivia', archive))).toBe('audit_period_current');
    expect(await codeOf(audit.retirePeriod(9, 'olivia', archive))).toBe('audit_period_not_found');
    // Without the policy set its decisions name, the bundle does not verify: kept.
    expect(await codeOf(audit.retirePeriod(0, 'olivia', noArchive))).toBe(
      'audit_retire_bundle_invalid',
    );
    expect(await rawEntries(r.db, 0)).toBe(7);
    expect(await (await audit.inPeriod(0)).entries(0, 7)).toHaveLength(7);
    await audit.retirePeriod(0, 'olivia', archive);
    expect(await codeOf(audit.retirePeriod(0, 'olivia', archive))).toBe('audit_period_retired');
  });

  it('refuses at start-up a frozen period whose entries vanished without a retirement record', async () => {
    const r = await rig();
    const audit = await periods(r);
    await audit.close();
    const sub = r.db.sublevel(periodStoreName(1), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const keys: string[] = [];
    for await (const k of sub.keys({ gte: 'e!', lt: 'e!~' })) keys.push(k);
    await sub.batch(keys.slice(1).map((key) => ({ type: 'del' as const, key })));
    const again = createAudit(
      { origin: ORIGIN, minAnchorIntervalMs: 0, maxBatchSize: 3 },
      { db: r.db, anchor: r.anchor, signer: r.signer },
    );
    cleanup.push(() => again.close());
    const err = (await again.ready().catch((e: unknown) => e)) as {
      code?: string;
      details?: { reason?: string };
    };
    expect(err.code).toBe('audit_rollback_detected');
    expect(err.details?.reason).toBe('store_entries_missing');
  });

  it('a retire interrupted while deleting is accepted at the next start and finished by the next call', async () => {
    const r = await rig();
    let chunks = 0;
    const audit = await r.open(() => {
      chunks += 1;
      if (chunks === 1) throw new Error('interrupted');
    });
    for (let i = 0; i < 7; i++) await audit.append(event(i));
    await audit.startPeriod('alice');
    await expect(audit.retirePeriod(0, 'olivia', archive)).rejects.toThrow('interrupted');
    const left = await rawEntries(r.db, 0);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(7);
    await audit.close();
    const again = await r.open();
    expect(await codeOf((await again.inPeriod(0)).entries(0, 1))).toBe('audit_entries_retired');
    const done = await again.retirePeriod(0, 'olivia', archive);
    expect(done.state).toBe('done');
    expect(await rawEntries(r.db, 0)).toBe(0);
    // One act recorded: the resumed call did not export or record again.
    expect((await again.query({ type: 'audit.period.retired' }, 0, 10)).entries).toHaveLength(1);
  });
  it('a crash after the act entry and before its record: the next retire records that act, not a second one', async () => {
    const r = await rig();
    const audit = await r.open();
    for (let i = 0; i < 7; i++) await audit.append(event(i));
    await audit.startPeriod('alice');
    const dir = join(r.dir, 'retired');
    // The act's entry is appended, then the record's write fails (the process died there).
    const periods = new LevelPeriodStore(r.db);
    const crashing = overlay(periods, {
      writeRetirement: () => Promise.reject(new Error('killed before the record')),
    });
    await expect(
      retirePeriod({
        audit,
        periods: crashing,
        config: { dir },
        clock: systemClock,
        policySet: archive,
        period: 0,
        actor: 'olivia',
      }),
    ).rejects.toThrow('killed before the record');
    expect(await rawEntries(r.db, 0)).toBe(7);
    const [first] = await readdir(dir);

    const done = await audit.retirePeriod(0, 'oscar', archive);
    expect(done).toMatchObject({ period: 0, from: 0, to: 7, state: 'done', actor: 'olivia' });
    expect(done.file).toBe(first);
    expect(await rawEntries(r.db, 0)).toBe(0);
    // One act, one bundle: the second call neither exported nor recorded again.
    const acts = (await audit.query({ type: 'audit.period.retired' }, 0, 10)).entries;
    expect(acts).toHaveLength(1);
    expect(acts[0]?.digest).toBe(done.bundleDigest);
    expect(await readdir(dir)).toEqual([first]);
  });

  it('grantor audit verify --full replays a retired period from its tiles, and names one edited', async () => {
    const r = await rig();
    const audit = await periods(r);
    await audit.retirePeriod(0, 'olivia', archive);
    await audit.retirePeriod(1, 'olivia', archive);
    await audit.close();
    const full = async (): Promise<{ code: number; out: string }> => {
      const out: string[] = [];
      const code = await runAuditCli(
        ['verify', '--full'],
        { openPeriods: () => Promise.resolve(new LevelPeriodStore(r.db)) },
        { out: (l) => out.push(l), err: (l) => out.push(l) },
      );
      return { code, out: out.join('\n') };
    };

    // Before: the replay read period 0's entries, gone, and failed.
    // 7 in period 0, the link and 3 in period 1, the link and the two acts in period 2.
    const good = await full();
    expect(good.out).toMatch(/^OK: 14 entries/);
    expect(good.out).toContain('retired: periods 0, 1 replayed from their level-0 tiles');
    expect(good.code).toBe(0);

    // A leaf hash of the retired period edited on disk: its batch roots no longer match.
    const p0 = r.db.sublevel(periodStoreName(0), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const key = `t!00!${'0'.repeat(16)}`;
    const tile = Buffer.from((await p0.get(key)) ?? '', 'base64');
    tile[5] = (tile[5] ?? 0) ^ 1;
    await p0.put(key, tile.toString('base64'));
    const edited = await full();
    expect(edited.out).toMatch(/^FAIL: log period 0: .*\(store_batch_root_mismatch\)$/m);
    expect(edited.code).toBe(1);
  });
  it('grantor audit retire PERIOD retires locally, audited as the cli, and refuses with the codes of the route', async () => {
    const r = await rig();
    const audit = await periods(r);
    const run = async (...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runAuditCli(
        ['retire', ...argv],
        {
          openAudit: () =>
            Promise.resolve({ audit, policySet: archive, close: () => Promise.resolve() }),
        },
        { out: (l) => out.push(l), err: (l) => err.push(l) },
      );
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    expect((await run('zero')).code).toBe(2);
    expect((await run('0', '1')).code).toBe(2);
    const current = await run('2');
    expect(current.code).toBe(1);
    expect(current.err).toContain('audit_period_current');
    expect(await rawEntries(r.db, 0)).toBe(7);

    const done = await run('0');
    expect(done.code).toBe(0);
    expect(done.out).toMatch(
      /^retired period 0: entries 0\.\.6 moved to \S+ \(sha256 [0-9a-f]{64}\)/,
    );
    expect(await rawEntries(r.db, 0)).toBe(0);
    const acts = await audit.query({ type: 'audit.period.retired' }, 0, 10);
    expect(acts.entries.map((e) => e.facts)).toEqual([
      expect.objectContaining({ period: 0, actor: 'cli' }),
    ]);

    const again = await run('0');
    expect(again.code).toBe(1);
    expect(again.err).toContain('audit_period_retired');
  });
  it('a period before a retired one still exports and retires: the chain needs only the later link entries', async () => {
    const r = await rig();
    const audit = await periods(r);
    await audit.retirePeriod(1, 'olivia', archive);
    expect(await codeOf((await audit.inPeriod(1)).entries(1, 1))).toBe('audit_entries_retired');
    // Period 0's bundle carries period 1's link entry (kept) and checkpoint to the current.
    const record = await audit.retirePeriod(0, 'olivia', archive);
    expect(record).toMatchObject({ period: 0, from: 0, to: 7, state: 'done' });
    const text = await readFile(join(r.dir, 'retired', record.file), 'utf8');
    const report = await verifyBundle(text.split('\n'), {
      verifierKey: parseVerifierKey(noteVerifierKey(r.signer.keyName, r.signer.publicKey)),
      skipTpmEvidence: true,
    });
    expect(report).toMatchObject({ entries: 7, bodies: 7, policies: 1, successors: 2 });
  });
});
