import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { type Database } from '../shared/db.level.js';
import { MemoryAnchor } from './anchor.memory.js';
import { extendDigest } from './anchor.port.js';
import type { CheckpointSigner } from './checkpoint.js';
import { parseCheckpoint, parseVerifierKey, verifyNote } from './checkpoint.js';
import type { AuditEvent } from './entry.js';
import { createAudit, type AuditService } from './index.js';
import { MerkleTree, leafHash } from './merkle.js';
import { PERIOD_STARTED, periodStoreName } from './periods.js';
import { TempDatabases, testSigner } from './testing.js';

const event = (i: number): AuditEvent => ({
  type: 'runtime.enrolled',
  subject: `rt_${i}`,
  digest: createHash('sha256').update(String(i)).digest('hex'),
});

const ORIGIN = 'grantor.test/periods';
const databases = new TempDatabases('grantor-audit-periods-');
let services: AuditService[] = [];
afterEach(async () => {
  for (const s of services) await s.close();
  services = [];
  await databases.cleanup();
});

interface Rig {
  readonly db: Database;
  readonly anchor: MemoryAnchor;
  readonly signer: CheckpointSigner;
  now: number;
  open(periodHours?: number): AuditService;
}

async function rig(): Promise<Rig> {
  const db = await databases.open();
  const r: Rig = {
    db,
    anchor: new MemoryAnchor(),
    signer: testSigner(ORIGIN),
    now: Date.parse('2026-12-01T00:00:00Z'),
    open: (periodHours) => {
      const audit = createAudit(
        {
          origin: ORIGIN,
          minAnchorIntervalMs: 0,
          ...(periodHours === undefined ? {} : { periodHours }),
        },
        { db, anchor: r.anchor, signer: r.signer, now: () => r.now },
      );
      services.push(audit);
      return audit;
    },
  };
  return r;
}

async function started(r: Rig, periodHours?: number): Promise<AuditService> {
  const audit = r.open(periodHours);
  await audit.provision();
  await audit.ready();
  return audit;
}

/** The registry and a period's store, as raw strings (what whoever holds the disk edits). */
const registry = (db: Database) =>
  db.sublevel('audit-periods', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
const recordKey = (n: number): string => `p!${n.toString().padStart(16, '0')}`;

async function refusal(audit: AuditService): Promise<{ code?: string; reason?: unknown }> {
  const err = (await audit.ready().then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: string; details?: { reason?: unknown } } | undefined;
  return { ...(err?.code === undefined ? {} : { code: err.code }), reason: err?.details?.reason };
}

describe('log periods', () => {
  it('starts a new origin whose first entry is the frozen period’s final checkpoint, the anchor running on', async () => {
    const r = await rig();
    const audit = await started(r);
    await Promise.all([0, 1, 2, 3, 4].map((i) => audit.append(event(i))));
    const final = await audit.checkpoint();
    const counterBefore = r.anchor.counter;
    const extendBefore = Buffer.from(r.anchor.extendValue);

    const info = await audit.startPeriod('alice');
    expect(info).toMatchObject({ period: 1, origin: `${ORIGIN}/period-1`, state: 'current' });
    expect(audit.currentPeriod()).toBe(1);
    // One batch (the link) anchored right after the frozen period's last: no gap.
    expect(r.anchor.counter).toBe(counterBefore + 1n);
    const [link] = await audit.entries(0, 1);
    expect(link?.type).toBe(PERIOD_STARTED);
    expect(link?.facts).toEqual({
      period: 1,
      previousPeriod: 0,
      previousOrigin: ORIGIN,
      previousSize: 5,
      previousRoot: Buffer.from(final.rootHash, 'base64').toString('hex'),
      previousCounter: final.nvCounter,
      previousExtend: Buffer.from(final.nvExtend, 'base64').toString('hex'),
      actor: 'alice',
    });
    const cp = await audit.checkpoint();
    expect(cp.origin).toBe(`${ORIGIN}/period-1`);
    expect(cp.treeSize).toBe(1);
    expect(r.anchor.extendValue).toEqual(
      extendDigest(extendBefore, Buffer.from(cp.rootHash, 'base64')),
    );
    const body = parseCheckpoint(
      verifyNote(cp.note, parseVerifierKey((await audit.verifier()).noteVerifierKey)),
    );
    expect(body.origin).toBe(`${ORIGIN}/period-1`);

    // Appends go on in the new period, from seq 1.
    const a = await audit.append(event(9));
    expect(a).toMatchObject({ seq: 1, period: 1 });
    // Counters span the periods (5 appends before the switch, 1 after).
    expect(audit.stats()).toMatchObject({ appends: 6 });
    expect(r.anchor.counter).toBe(counterBefore + 2n);
  });

  it('serves a frozen period read-only: its final checkpoint, entries and proofs', async () => {
    const r = await rig();
    const audit = await started(r);
    await Promise.all([0, 1, 2].map((i) => audit.append(event(i))));
    const final = await audit.checkpoint();
    await audit.startPeriod('alice');
    await audit.append(event(7));

    const frozen = await audit.inPeriod(0);
    const cp = await frozen.checkpoint();
    expect(cp).toMatchObject({ origin: ORIGIN, treeSize: 3, rootHash: final.rootHash });
    expect(cp.nvCounter).toBe(final.nvCounter);
    const entries = await frozen.entries(0, 10);
    expect(entries.map((e) => e.subject)).toEqual(['rt_0', 'rt_1', 'rt_2']);
    // Proofs from the frozen period's tiles equal the reference tree's over its entries.
    const reference = new MerkleTree();
    for (const e of entries) reference.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
    expect(reference.root().toString('base64')).toBe(final.rootHash);
    const p = await frozen.inclusionProof(1, 3);
    expect(p.path).toEqual(reference.inclusionProof(1, 3).map((h) => h.toString('hex')));
    // What a frozen period cannot do, each with its code.
    await expect(frozen.append(event(8))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(frozen.checkpoint({ nonce: Buffer.alloc(8, 1) })).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(audit.inPeriod(2)).rejects.toMatchObject({ code: 'audit_period_not_found' });
    await expect(audit.inPeriod(-1)).rejects.toMatchObject({ code: 'bad_request' });
    expect((await audit.periods()).map((p) => [p.period, p.state])).toEqual([
      [0, 'frozen'],
      [1, 'current'],
    ]);
  });

  it('keeps every append made while a switch runs, each in exactly one period', async () => {
    const r = await rig();
    const audit = await started(r);
    const appends = Array.from({ length: 40 }, (_, i) => audit.append(event(i)));
    // The switch begins while most of these are queued or in a batch being anchored.
    await appends[0];
    const switched = audit.startPeriod('alice');
    const later = Array.from({ length: 40 }, (_, i) => audit.append(event(100 + i)));
    const acks = await Promise.all([...appends, ...later]);
    await switched;
    const p0 = await (await audit.inPeriod(0)).entries(0, 1000);
    const p1 = await audit.entries(0, 1000);
    expect(p1[0]?.type).toBe(PERIOD_STARTED);
    expect(p1[0]?.facts).toMatchObject({ previousSize: p0.length });
    const subjects = [...p0, ...p1.slice(1)].map((e) => e.subject).sort();
    expect(subjects).toHaveLength(80);
    expect(new Set(subjects).size).toBe(80);
    // Every acknowledgement names an entry of one of the two periods.
    const hashes = new Set([...p0, ...p1].map((e) => e.hash));
    for (const a of acks) expect(hashes.has(a.hash)).toBe(true);
  });

  it('comes back in the current period after a restart, the frozen one checked', async () => {
    const r = await rig();
    const audit = await started(r);
    await audit.append(event(0));
    await audit.startPeriod('alice');
    await audit.append(event(1));
    await audit.startPeriod('bob');
    await audit.close();
    const again = r.open();
    await again.ready();
    expect(again.currentPeriod()).toBe(2);
    expect((await again.checkpoint()).origin).toBe(`${ORIGIN}/period-2`);
    expect((await again.append(event(2))).seq).toBe(1);
    expect((await (await again.inPeriod(1)).entries(0, 10)).map((e) => e.subject)).toEqual([
      'period:1',
      'rt_1',
    ]);
  });

  it('refuses an old period presented as current', async () => {
    const r = await rig();
    const audit = await started(r);
    await audit.append(event(0));
    await audit.startPeriod('alice');
    await audit.close();
    await registry(r.db).put('current', JSON.stringify({ period: 0 }));
    expect(await refusal(r.open())).toEqual({
      code: 'audit_rollback_detected',
      reason: 'period_not_current',
    });
    // The whole registry rolled back as well: the TPM anchor is ahead of period 0.
    await registry(r.db).del('current');
    await registry(r.db).del(recordKey(1));
    expect(await refusal(r.open())).toEqual({
      code: 'audit_rollback_detected',
      reason: 'store_behind_anchor',
    });
  });

  it('refuses a skipped period and a link that does not match its record', async () => {
    const r = await rig();
    const audit = await started(r);
    await audit.append(event(0));
    await audit.startPeriod('alice');
    await audit.append(event(1));
    await audit.startPeriod('alice');
    await audit.close();
    const reg = registry(r.db);
    const one = (await reg.get(recordKey(1))) ?? '';
    await reg.del(recordKey(1));
    expect(await refusal(r.open())).toEqual({
      code: 'audit_rollback_detected',
      reason: 'period_registry_malformed',
    });
    await reg.put(recordKey(1), one);
    // Period 1's store gone: period 2's link names an end nobody can show.
    const store1 = r.db.sublevel(periodStoreName(1), {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
    });
    const saved = await store1.iterator().all();
    await store1.clear();
    expect(await refusal(r.open())).toEqual({
      code: 'audit_rollback_detected',
      reason: 'store_missing',
    });
    await store1.batch(saved.map(([key, value]) => ({ type: 'put' as const, key, value })));
    // The record's copy of the previous end edited (the anchor base untouched).
    const two = JSON.parse((await reg.get(recordKey(2))) ?? '{}') as {
      previous: { size: number };
    };
    two.previous.size += 1;
    await reg.put(recordKey(2), JSON.stringify(two));
    expect(await refusal(r.open())).toEqual({
      code: 'audit_rollback_detected',
      reason: 'period_link_mismatch',
    });
  });

  it('starts scheduled periods when the current one is older than the setting, never empty ones', async () => {
    const r = await rig();
    const audit = await started(r, 24);
    expect(await (audit as unknown as { tick(): Promise<boolean> }).tick()).toBe(false);
    await audit.append(event(0));
    r.now += 23 * 3_600_000;
    const tick = (): Promise<boolean> => (audit as unknown as { tick(): Promise<boolean> }).tick();
    expect(await tick()).toBe(false);
    r.now += 3_600_000;
    expect(await tick()).toBe(true);
    expect(audit.currentPeriod()).toBe(1);
    expect((await audit.entries(0, 1))[0]?.facts).toMatchObject({ actor: 'schedule' });
    // Only the link entry in it: no new period however long it stays idle.
    r.now += 100 * 3_600_000;
    expect(await tick()).toBe(false);
  });

  it('a switch whose write fails leaves the old period current; one that landed but reported failure is found at the next append', async () => {
    const r = await rig();
    let fault: 'before' | 'after' | undefined;
    const audit = createAudit(
      { origin: ORIGIN, minAnchorIntervalMs: 0 },
      {
        db: r.db,
        anchor: r.anchor,
        signer: r.signer,
        now: () => r.now,
        decoratePeriods: (p) => ({
          readCurrent: () => p.readCurrent(),
          readRecord: (n) => p.readRecord(n),
          readRetirement: (n) => p.readRetirement(n),
          writeRetirement: (n, r) => p.writeRetirement(n, r),
          store: (n) => p.store(n),
          startPeriod: async (...args) => {
            if (fault === 'before') throw new Error('disk full');
            await p.startPeriod(...args);
            if (fault === 'after') throw new Error('sync reported failure');
          },
        }),
      },
    );
    services.push(audit);
    await audit.provision();
    await audit.ready();
    await audit.append(event(0));
    const counter = r.anchor.counter;

    fault = 'before';
    await expect(audit.startPeriod('alice')).rejects.toThrow('disk full');
    expect(r.anchor.counter).toBe(counter);
    await expect(audit.append(event(1))).resolves.toMatchObject({ seq: 1, period: 0 });

    fault = 'after';
    await expect(audit.startPeriod('alice')).rejects.toThrow('sync reported failure');
    fault = undefined;
    // The registry says period 1: the next append starts it (anchoring its link) and lands there.
    await expect(audit.append(event(2))).resolves.toMatchObject({ seq: 1, period: 1 });
    const [link] = await audit.entries(0, 1);
    expect(link?.facts).toMatchObject({ previousSize: 2, previousPeriod: 0 });
  });

  it('refuses a period length that is not a whole number of hours', () => {
    const r = { db: undefined as unknown as Database };
    for (const periodHours of [0, -1, 1.5]) {
      expect(() =>
        createAudit(
          { origin: ORIGIN, minAnchorIntervalMs: 0, periodHours },
          { db: r.db, anchor: new MemoryAnchor(), signer: testSigner(ORIGIN) },
        ),
      ).toThrow(expect.objectContaining({ code: 'config_invalid' }) as Error);
    }
  });
});
