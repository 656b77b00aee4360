import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENESIS_EXTEND, extendDigest } from './anchor.port.js';
import { MemoryAnchor } from './anchor.memory.js';
import { MemoryAuditStore } from './audit-store.memory.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import { GENESIS_PREV_HASH, buildEntry, entryHash } from './entry.js';
import type { Clock } from '../shared/clock.js';
import type { DomainLogger } from '../shared/log.js';
import type { AuditLogOptions } from './log.js';
import { AuditLog } from './log.js';
import { MerkleTree, leafHash } from './merkle.js';
import { TiledTree } from './tiled-tree.js';
import { AnchorError } from './errors.js';

const options: AuditLogOptions = {
  origin: 'grantor.test/log',
  maxBatchSize: 100,
  minAnchorIntervalMs: 0,
  anchorRetryDeadlineMs: 1000,
};

/** A clock whose sleeps advance time instantly, recording what was asked for. */
function fakeClock(): Clock & { sleeps: number[] } {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: async (ms) => {
      sleeps.push(ms);
      t += ms;
      await Promise.resolve();
    },
  };
}

function captureLogger(): DomainLogger & { lines: { obj: object; msg: string }[] } {
  const lines: { obj: object; msg: string }[] = [];
  const push = (obj: object, msg: string): void => {
    lines.push({ obj, msg });
  };
  return { lines, info: push, warn: push, error: push };
}

const event = (i: number): AuditEvent => ({
  type: 'grant.decision',
  subject: `rt_${i}`,
  decision: i % 2 === 0 ? 'allow' : 'deny',
  digest: createHash('sha256').update(`req-${i}`).digest('hex'),
});

async function openLog(
  store = new MemoryAuditStore(),
  anchor = new MemoryAnchor(),
  opts: Partial<AuditLogOptions> = {},
  logger?: DomainLogger,
  clock: Clock = fakeClock(),
): Promise<{ log: AuditLog; store: MemoryAuditStore; anchor: MemoryAnchor }> {
  const log = new AuditLog(store, anchor, { ...options, ...opts }, clock, logger);
  await log.provision();
  await log.open();
  return { log, store, anchor };
}

/** A log on `clock` whose anchors are at least 500 ms apart, entry 0 appended. */
async function rateLimitedLog(clock: Clock): Promise<{ log: AuditLog; anchor: MemoryAnchor }> {
  const opened = await openLog(
    undefined,
    undefined,
    { minAnchorIntervalMs: 500 },
    undefined,
    clock,
  );
  await opened.log.append(event(0));
  return opened;
}

async function appendMany(log: AuditLog, from: number, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => log.append(event(from + i))));
}

const rollback = { code: 'audit_rollback_detected' };
const unavailable = { code: 'audit_unavailable' };
const refused = (reason: string, extra: Record<string, unknown> = {}): object => ({
  code: 'audit_rollback_detected',
  details: { reason, ...extra },
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** Recompute what the anchor must hold from the store alone (independent of the log). */
function expectedAnchor(store: MemoryAuditStore): { extend: Buffer; batches: number } {
  let e: Buffer = Buffer.from(GENESIS_EXTEND);
  const batches = [...store.batches.values()].map((b) => JSON.parse(b) as { root: string });
  for (const b of batches) e = extendDigest(e, Buffer.from(b.root, 'hex'));
  return { extend: e, batches: batches.length };
}

describe('AuditLog: appends', () => {
  it('chains entries from seq 0 and anchors every batch', async () => {
    const { log, store, anchor } = await openLog();
    const first = await log.append(event(0));
    expect(first.seq).toBe(0);
    await appendMany(log, 1, 9);
    const entries = await log.entries(0, 100);
    expect(entries.map((e) => e.seq)).toEqual([...Array(10).keys()]);
    let prev = GENESIS_PREV_HASH;
    const tree = new MerkleTree();
    for (const e of entries) {
      expect(e.prevHash).toBe(prev);
      expect(entryHash(e)).toBe(e.hash);
      prev = e.hash;
      tree.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
    }
    const head = log.head();
    expect(head.size).toBe(10);
    expect(head.root.equals(tree.root())).toBe(true);
    const exp = expectedAnchor(store);
    expect(anchor.extendValue.equals(exp.extend)).toBe(true);
    expect(anchor.counter).toBe(1n + BigInt(exp.batches));
    expect(head.counter).toBe(anchor.counter);
  });

  it('forms batches under load by itself: the first append commits alone, the rest together', async () => {
    const { log, anchor } = await openLog();
    const acks = await Promise.all(Array.from({ length: 64 }, (_, i) => log.append(event(i))));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(64);
    expect(log.stats().batches).toBe(2);
    expect(anchor.calls.extend).toBe(2);
    expect(log.stats().nvWrites).toBe(4);
  });

  it('an append that arrives while a batch is in flight waits for exactly one more batch', async () => {
    let release = (): void => undefined;
    let gate: Promise<void> | undefined;
    class GatedAnchor extends MemoryAnchor {
      override async extend(data: Buffer): Promise<void> {
        if (gate !== undefined) await gate;
        return super.extend(data);
      }
    }
    const { log, store } = await openLog(undefined, new GatedAnchor());
    gate = new Promise((r) => {
      release = r;
    });
    const first = log.append(event(0));
    await new Promise((r) => setImmediate(r)); // batch 0 is now waiting on its extend
    const during = [log.append(event(1)), log.append(event(2))];
    let settled = 0;
    for (const p of during) void p.then(() => (settled += 1));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(0); // not acknowledged with batch 0
    gate = undefined;
    release();
    expect((await first).seq).toBe(0);
    expect((await Promise.all(during)).map((a) => a.seq)).toEqual([1, 2]);
    // Batch 0 held the first append alone; both later ones went into batch 1.
    const sizes = [...store.batches.values()].map((b) => (JSON.parse(b) as { size: number }).size);
    expect(sizes).toEqual([1, 3]);
    expect(log.stats().batches).toBe(2);
  });

  it('bounds the batch size', async () => {
    const { log } = await openLog(undefined, undefined, { maxBatchSize: 10 });
    await appendMany(log, 0, 45);
    // 1 alone, then 44 queued in batches of at most 10.
    expect(log.stats().batches).toBe(6);
  });

  it('waits out the minimum interval between anchors instead of skipping', async () => {
    const clock = fakeClock();
    const { log, anchor } = await rateLimitedLog(clock);
    expect(clock.sleeps).toEqual([]);
    await Promise.all([log.append(event(1)), log.append(event(2))]);
    expect(clock.sleeps).toEqual([500]);
    expect(anchor.calls.extend).toBe(2);
  });

  it('holds commits back while whileIdle runs, also after a rate-limit wait', async () => {
    let t = 0;
    let wake: (() => void) | undefined;
    const clock: Clock = {
      now: () => t,
      sleep: (ms) =>
        new Promise<void>((resolve) => {
          wake = () => {
            t += ms;
            resolve();
          };
        }),
    };
    const { log, anchor } = await rateLimitedLog(clock);
    const second = log.append(event(1)); // waits out the interval
    for (let i = 0; i < 100 && wake === undefined; i++) await Promise.resolve();
    expect(wake).toBeDefined();
    const extendsDuring = await log.whileIdle(async (head) => {
      const before = anchor.calls.extend;
      wake?.();
      for (let i = 0; i < 20; i++) await Promise.resolve();
      expect(head.size).toBe(1);
      return anchor.calls.extend - before;
    });
    expect(extendsDuring).toBe(0);
    await expect(second).resolves.toMatchObject({ seq: 1 });
  });

  it('refuses a malformed event with bad_request before it reaches a batch', async () => {
    const { log } = await openLog();
    await expect(log.append({ ...event(0), digest: 'nothex' })).rejects.toMatchObject({
      code: 'bad_request',
    });
    expect(log.head().size).toBe(0);
  });

  it('refuses appends before open and after close', async () => {
    const log = new AuditLog(new MemoryAuditStore(), new MemoryAnchor(), options, fakeClock());
    await log.provision();
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
    await log.open();
    await log.close();
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
  });
});

describe('AuditLog: faults during appends', () => {
  it('retries TPM_RC_NV_RATE-like responses within the deadline', async () => {
    const { log, anchor } = await openLog();
    const busy = new AnchorError('TPM_RC_NV_RATE', true);
    anchor.faults.push({ op: 'extend', error: busy }, { op: 'increment', error: busy });
    await expect(log.append(event(0))).resolves.toMatchObject({ seq: 0 });
    expect(log.stats().nvRetries).toBe(2);
  });

  it('gives up on retryable responses after the deadline: audit_unavailable', async () => {
    const { log, anchor } = await openLog(undefined, undefined, { anchorRetryDeadlineMs: 50 });
    for (let i = 0; i < 100; i++) {
      anchor.faults.push({ op: 'extend', error: new AnchorError('TPM_RC_NV_RATE', true) });
    }
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
    anchor.faults.length = 0;
    // The stored batch is anchored by reconciliation, then the new one follows it.
    await expect(log.append(event(1))).resolves.toMatchObject({ seq: 1 });
  });

  it('a store write failure rejects every waiter of the batch, then recovers', async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    store.writeFaults.push({ error: new Error('EIO'), durable: false });
    const batch = Array.from({ length: 5 }, (_, i) => log.append(event(1 + i)));
    const results = await Promise.allSettled(batch);
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    for (const r of results)
      if (r.status === 'rejected') expect(r.reason).toMatchObject(unavailable);
    expect(anchor.counter).toBe(2n);
    await expect(log.append(event(9))).resolves.toMatchObject({ seq: 1 });
    expect(log.head().size).toBe(2);
  });

  it('a store write that was durable but reported failure is anchored on recovery', async () => {
    const { log, store, anchor } = await openLog();
    store.writeFaults.push({ error: new Error('EIO after write'), durable: true });
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
    await expect(log.append(event(1))).resolves.toMatchObject({ seq: 1 });
    const exp = expectedAnchor(store);
    expect(exp.batches).toBe(2);
    expect(anchor.extendValue.equals(exp.extend)).toBe(true);
  });

  it('two durable-but-failed store writes in a row: each recovered, the tree stays right', async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    store.writeFaults.push(
      { error: new Error('EIO after write'), durable: true },
      { error: new Error('EIO after write'), durable: true },
    );
    await expect(log.append(event(1))).rejects.toMatchObject(unavailable);
    // This commit first anchors batch 1 (reconcile), then its own write fails again.
    await expect(log.append(event(2))).rejects.toMatchObject(unavailable);
    await expect(log.append(event(3))).resolves.toMatchObject({ seq: 3 });
    const entries = await log.entries(0, 10);
    const tree = new MerkleTree();
    for (const e of entries) tree.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
    expect(log.head().root.equals(tree.root())).toBe(true);
    expect(anchor.extendValue.equals(expectedAnchor(store).extend)).toBe(true);
    const again = await openLog(store, anchor);
    expect(again.log.head().size).toBe(4);
  });

  it("the batch's writes stopped after the extend: only the increment is tried again", async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    const before = { ...anchor.calls, batches: anchor.batchWrites };
    anchor.faults.push({ op: 'increment', error: new AnchorError('TPM_RC_NV_RATE', true) });
    await expect(log.append(event(1))).resolves.toMatchObject({ seq: 1 });
    // One writeBatch; its extend landed, so the step path sent the increment alone.
    expect(anchor.batchWrites - before.batches).toBe(1);
    expect(anchor.calls.extend - before.extend).toBe(1);
    expect(anchor.calls.increment - before.increment).toBe(2);
    expect(log.stats()).toMatchObject({ nvRetries: 1, nvWrites: 4 });
    expect(anchor.extendValue.equals(expectedAnchor(store).extend)).toBe(true);
    expect(anchor.counter).toBe(3n);
  });

  it("the batch's writes stopped at a store failure: nothing reaches the anchor", async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    const before = { ...anchor.calls };
    store.writeFaults.push({ error: new Error('EIO'), durable: false });
    await expect(log.append(event(1))).rejects.toMatchObject(unavailable);
    expect(anchor.calls.extend).toBe(before.extend);
    expect(anchor.calls.increment).toBe(before.increment);
    expect(anchor.counter).toBe(2n);
  });

  it('a lost TPM response after the extend: recovery finishes with the increment', async () => {
    const { log, store, anchor } = await openLog();
    anchor.faults.push({
      op: 'extend',
      error: new AnchorError('connection reset', false),
      executed: true,
    });
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
    anchor.faults.push({ op: 'increment', error: new AnchorError('connection reset', false) });
    await expect(log.append(event(1))).rejects.toMatchObject(unavailable);
    await expect(log.append(event(2))).resolves.toMatchObject({ seq: 1 });
    expect(anchor.extendValue.equals(expectedAnchor(store).extend)).toBe(true);
    expect(anchor.counter).toBe(3n);
  });

  it('whileIdle settles a batch that failed half-way before it shows the head', async () => {
    const { log, anchor } = await openLog();
    await log.append(event(0));
    anchor.faults.push({ op: 'increment', error: new AnchorError('connection reset', false) });
    await expect(log.append(event(1))).rejects.toMatchObject(unavailable);
    // The TPM holds batch 1's extend; the head must not be shown beside it unsettled.
    anchor.faults.push({ op: 'read', error: new AnchorError('TPM not reachable', false) });
    await expect(log.whileIdle(() => Promise.resolve(0))).rejects.toMatchObject(unavailable);
    const seen = await log.whileIdle((head) =>
      Promise.resolve({ head, tpm: { counter: anchor.counter, extend: anchor.extendValue } }),
    );
    expect(seen.head.size).toBe(2);
    expect(seen.head.counter).toBe(seen.tpm.counter);
    expect(seen.head.extendValue.equals(seen.tpm.extend)).toBe(true);
  });

  it('TPM unreachable: rejected while it lasts, recovers when it returns', async () => {
    const { log, anchor } = await openLog();
    const down = new AnchorError('TPM not reachable', false);
    anchor.faults.push({ op: 'extend', error: down }, { op: 'read', error: down });
    await expect(log.append(event(0))).rejects.toMatchObject(unavailable);
    await expect(log.append(event(1))).rejects.toMatchObject(unavailable);
    await expect(log.append(event(2))).resolves.toMatchObject({ seq: 1 });
    const seqs = (await log.entries(0, 10)).map((e) => e.subject);
    expect(seqs).toEqual(['rt_0', 'rt_2']);
  });
});

describe('AuditLog: start-up check', () => {
  it('restarts on a consistent store and continues the chain', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 7);
    const head = log.head();
    const again = await openLog(store, anchor);
    expect(again.log.head().root.equals(head.root)).toBe(true);
    const next = await again.log.append(event(7));
    expect(next.seq).toBe(7);
    const [e7] = await again.log.entries(7, 1);
    const [e6] = await again.log.entries(6, 1);
    expect(e7?.prevHash).toBe(e6?.hash);
  });

  it('anchors a store that is exactly one un-anchored batch ahead', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 3);
    // Crash after the store write, before any TPM write.
    anchor.faults.push({ op: 'extend', error: new AnchorError('killed', false) });
    await expect(log.append(event(3))).rejects.toMatchObject(unavailable);
    const logger = captureLogger();
    const again = await openLog(store, anchor, {}, logger);
    expect(again.log.head().size).toBe(4);
    expect(anchor.extendValue.equals(expectedAnchor(store).extend)).toBe(true);
    expect(logger.lines.some((l) => l.msg.includes('un-anchored batch'))).toBe(true);
  });

  it.each([
    ['an increment', (a: MemoryAnchor) => void (a.counter += 1n)],
    [
      'an extend',
      (a: MemoryAnchor) => void (a.extendValue = extendDigest(a.extendValue, a.extendValue)),
    ],
  ])('notices a foreign write (%s) at the next batch: anchor_foreign_write', async (_w, write) => {
    const { log, anchor } = await openLog();
    await log.append(event(0));
    write(anchor);
    await expect(log.append(event(1))).rejects.toMatchObject(refused('anchor_foreign_write'));
    expect(log.state).toBe('refused');
    await expect(log.append(event(2))).rejects.toMatchObject(rollback);
  });

  it('refuses to anchor an un-anchored batch the log could not have written', async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    await log.append(event(1));
    const before = { counter: anchor.counter, extend: Buffer.from(anchor.extendValue) };
    const head = await log.entries(0, 2);
    // A batch of 10 written to the store but never anchored, entry times chosen by `time`.
    // The forger writes what a commit writes: entries, tiles and a chained batch record.
    const withBatch = async (
      time: (seq: number) => string,
      linkedTo = head[1]?.hash ?? '',
    ): Promise<MemoryAuditStore> => {
      const f = store.clone();
      const tree = await TiledTree.load(f, 2);
      let prev = linkedTo;
      const entries: AuditEntry[] = [];
      for (let seq = 2; seq < 12; seq++) {
        const e = buildEntry(event(seq), seq, time(seq), prev);
        entries.push(e);
        tree.appendLeaf(leafHash(Buffer.from(e.hash, 'hex')));
        prev = e.hash;
      }
      const root = tree.root();
      const extend = extendDigest(before.extend, root).toString('hex');
      await f.appendBatch({
        entries,
        batch: { index: 2, size: 12, root: root.toString('hex'), extend },
        bodies: [],
        tiles: tree.writes(),
      });
      return f;
    };
    const open = (f: MemoryAuditStore, opts: Partial<AuditLogOptions> = {}) =>
      new AuditLog(f, anchor, { ...options, ...opts }, fakeClock()).open();
    const honest = () => '2026-01-01T00:00:00.000Z';
    // Larger than a commit makes (maxBatchSize 5, the batch holds 10).
    await expect(open(await withBatch(honest), { maxBatchSize: 5 })).rejects.toMatchObject(
      refused('store_unanchored_batch_implausible', { batch: 2, entries: 10, problem: 'size' }),
    );
    await expect(
      open(await withBatch((seq) => new Date(Date.parse(honest()) + seq).toISOString())),
    ).rejects.toMatchObject(
      refused('store_unanchored_batch_implausible', { problem: 'times_differ' }),
    );
    await expect(open(await withBatch(() => '2030-01-01T00:00:00.000Z'))).rejects.toMatchObject(
      refused('store_unanchored_batch_implausible', { problem: 'time_in_future' }),
    );
    // Not chained to the anchored head (a batch built on another history).
    await expect(open(await withBatch(honest, 'ab'.repeat(32)))).rejects.toMatchObject(
      refused('store_entry_broken', { seq: 2, problem: 'prev_hash' }),
    );
    // Nothing was anchored on the way; the plausible batch is.
    expect(anchor.counter).toBe(before.counter);
    expect(anchor.extendValue.equals(before.extend)).toBe(true);
    await expect(open(await withBatch(honest))).resolves.toBeUndefined();
    expect(anchor.counter).toBe(before.counter + 1n);
  });

  it('detects a store restored from an older copy', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 4);
    const old = store.clone();
    await appendMany(log, 4, 4);
    await log.append(event(8));
    const logger = captureLogger();
    const restarted = new AuditLog(old, anchor, options, fakeClock(), logger);
    await expect(restarted.open()).rejects.toMatchObject(rollback);
    await expect(restarted.append(event(9))).rejects.toMatchObject(rollback);
    expect(thrown(() => restarted.head())).toMatchObject(rollback);
    const line = logger.lines.find((l) => l.msg.includes('refusing to serve'));
    expect(line?.msg).toContain('behind');
    expect(line?.obj).toMatchObject({ reason: 'store_behind_anchor' });
  });

  it('detects a store restored from a copy one batch behind', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 3);
    const old = store.clone();
    await log.append(event(3));
    await expect(new AuditLog(old, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      rollback,
    );
  });

  it('detects a rewritten middle entry', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 6);
    const e = JSON.parse(store.entries.get(3) ?? '') as AuditEntry;
    const forged = { ...e, decision: 'allow', subject: 'rt_forged' };
    store.entries.set(3, JSON.stringify({ ...forged, hash: entryHash(forged) }));
    await expect(new AuditLog(store, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_entry_broken', { seq: 4 }),
    );
  });

  it('detects a rewritten chain whose roots were recomputed (extend value differs)', async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    // A forger rebuilds the whole store consistently: only the TPM knows better.
    const forged = new MemoryAuditStore();
    const other = await openLog(forged, new MemoryAnchor(anchor.counter - 1n));
    await other.log.append({ ...event(0), decision: 'deny' });
    forged.meta = store.meta;
    await expect(new AuditLog(forged, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_anchor_mismatch'),
    );
  });

  it('detects a truncated tail', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 5);
    store.entries.delete(4);
    await expect(new AuditLog(store, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_truncated'),
    );
  });

  it('detects a store from another appliance (other origin, or other anchor history)', async () => {
    const a = await openLog();
    await appendMany(a.log, 0, 3);
    const b = await openLog(new MemoryAuditStore(), new MemoryAnchor(), {
      origin: 'grantor.test/other',
    });
    await appendMany(b.log, 0, 3);
    await expect(
      new AuditLog(b.store, a.anchor, options, fakeClock()).open(),
    ).rejects.toMatchObject(refused('store_origin_mismatch'));
    const c = await openLog();
    await appendMany(c.log, 10, 3);
    await expect(
      new AuditLog(c.store, a.anchor, options, fakeClock()).open(),
    ).rejects.toMatchObject(rollback);
  });

  it('refuses an empty store on an anchor that already recorded batches', async () => {
    const { log, anchor } = await openLog();
    await log.append(event(0));
    await expect(
      new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock()).open(),
    ).rejects.toMatchObject(refused('store_missing', { tpmCounter: '2', pinnedGenesis: '1' }));
    // Provisioning does not start a new log there either: the counter is past the genesis.
    await expect(
      new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock()).provision(),
    ).rejects.toMatchObject(refused('store_missing'));
  });

  it('never creates a log at start, even on an anchor at its genesis: provisioning does', async () => {
    const anchor = new MemoryAnchor(7n);
    const store = new MemoryAuditStore();
    await expect(new AuditLog(store, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_missing', { tpmCounter: '7', pinnedGenesis: '7' }),
    );
    expect(store.meta).toBeUndefined();
    const log = new AuditLog(store, anchor, options, fakeClock());
    await expect(log.provision()).resolves.toBe(true);
    await expect(log.provision()).resolves.toBe(false);
    await log.open();
    await expect(log.append(event(0))).resolves.toMatchObject({ seq: 0 });
    expect(anchor.counter).toBe(8n);
  });

  it('says "not provisioned" (not a rollback) when no anchor is pinned', async () => {
    const anchor = new MemoryAnchor();
    anchor.genesis = undefined;
    anchor.pinnedNamesMatch = false; // not even looked at
    const logger = captureLogger();
    const log = new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock(), logger);
    await expect(log.open()).rejects.toMatchObject({
      code: 'audit_not_provisioned',
      message: 'not provisioned: run `grantor provision`',
    });
    await expect(log.append(event(0))).rejects.toMatchObject({ code: 'audit_not_provisioned' });
    expect(logger.lines.map((l) => l.obj)).toEqual([{ event: 'audit_not_provisioned' }]);
    await expect(
      new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock()).provision(),
    ).rejects.toMatchObject({ code: 'audit_not_provisioned' });
  });

  it('takes the genesis from the pin, never from the store (edited or foreign meta)', async () => {
    const { log, store, anchor } = await openLog(undefined, new MemoryAnchor(5n));
    await appendMany(log, 0, 3);
    const edited = store.clone();
    edited.meta = JSON.stringify({ version: 1, origin: options.origin, genesisCounter: '4' });
    await expect(new AuditLog(edited, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_genesis_mismatch', { storeGenesis: '4', pinnedGenesis: '5' }),
    );
    // A store genesis that the equation would accept still loses to the pin.
    anchor.genesis = 4n;
    await expect(new AuditLog(store, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_genesis_mismatch', { storeGenesis: '5', pinnedGenesis: '4' }),
    );
  });

  it('refuses a store more than one batch ahead of the anchor', async () => {
    const { log, store, anchor } = await openLog();
    await log.append(event(0));
    const tpmBefore = { counter: anchor.counter, extend: Buffer.from(anchor.extendValue) };
    await log.append(event(1));
    await log.append(event(2));
    anchor.counter = tpmBefore.counter;
    anchor.extendValue = tpmBefore.extend;
    await expect(new AuditLog(store, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_ahead_of_anchor'),
    );
  });

  it('refuses when the pinned NV names do not match', async () => {
    const anchor = new MemoryAnchor();
    anchor.pinnedNamesMatch = false;
    const log = new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock());
    await expect(log.open()).rejects.toMatchObject(refused('pinned_nv_name_mismatch'));
  });

  it('refuses entries after the last batch record, and malformed metadata', async () => {
    const { log, store, anchor } = await openLog();
    await appendMany(log, 0, 2);
    const edited = store.clone();
    edited.batches.delete(1);
    await expect(new AuditLog(edited, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_unbatched_entries'),
    );
    const badMeta = store.clone();
    badMeta.meta = '{"version":2}';
    await expect(new AuditLog(badMeta, anchor, options, fakeClock()).open()).rejects.toMatchObject(
      refused('store_meta_malformed'),
    );
  });

  it('is unavailable (not refused) when the TPM cannot be read at start, and retries', async () => {
    const anchor = new MemoryAnchor();
    const log = new AuditLog(new MemoryAuditStore(), anchor, options, fakeClock());
    await log.provision();
    anchor.faults.push({ op: 'read', error: new AnchorError('no TPM', false) });
    await expect(log.open()).rejects.toMatchObject(unavailable);
    await expect(log.open()).resolves.toBeUndefined();
  });

  it('is unavailable when the store cannot be read at start', async () => {
    const store = new MemoryAuditStore();
    store.readFault = new Error('EIO');
    await expect(
      new AuditLog(store, new MemoryAnchor(), options, fakeClock()).open(),
    ).rejects.toMatchObject(unavailable);
  });
});

describe('AuditLog: reads are bounded by the anchored state', () => {
  it('refuses sizes beyond the anchored head and unknown entries', async () => {
    const { log } = await openLog();
    await appendMany(log, 0, 3);
    await expect(log.inclusionProof(0, 4)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(log.consistencyProof(1, 4)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(log.root(4)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(log.entries(3, 1)).rejects.toMatchObject({ code: 'not_found' });
    await expect(log.entries(-1, 1)).rejects.toMatchObject({ code: 'bad_request' });
    expect((await log.entries(1, 100)).length).toBe(2);
  });

  it('notices an entry edited in the store while running', async () => {
    const { log, store } = await openLog();
    await appendMany(log, 0, 2);
    const e = JSON.parse(store.entries.get(1) ?? '') as AuditEntry;
    const forged = { ...e, subject: 'rt_x' };
    store.entries.set(1, JSON.stringify({ ...forged, hash: entryHash(forged) }));
    await expect(log.entries(0, 2)).rejects.toMatchObject(unavailable);
  });
});
