import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jcsSha256Hex } from '../shared/jcs.js';
import { MemoryAnchor } from './anchor.memory.js';
import { openBundle, type BundlePolicySet, type BundleRequest } from './bundle.js';
import {
  noteVerifierKey,
  parseCheckpoint,
  parseVerifierKey,
  verifyNote,
  type CheckpointSigner,
} from './checkpoint.js';
import { entryHash, type AuditEntry, type AuditEvent } from './entry.js';
import type { PeriodStartedFacts } from './facts.js';
import { createAudit } from './index.js';
import type { AuditService } from './service.js';
import { verifyBundle, type BundleReport, type BundleTrust } from './verify-bundle.js';
import { TempDatabases, testSigner } from './testing.js';
import { BundleInvalidError, BundlePairInvalidError } from './errors.js';
import { verifyBundlePair } from './verify-bundle-pair.js';

const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
const SET_A: Omit<BundlePolicySet, 'hash'> = {
  schema: 'entity Runtime;',
  policies: { 'a.cedar': '@id("a") permit(principal, action, resource);' },
};
const SET_B: Omit<BundlePolicySet, 'hash'> = {
  schema: 'entity Runtime;',
  policies: { 'b.cedar': '@id("b") forbid(principal, action, resource);' },
};
const HASH_A = jcsSha256Hex({ policies: SET_A.policies, schema: SET_A.schema });
const HASH_B = jcsSha256Hex({ policies: SET_B.policies, schema: SET_B.schema });
const archive = new Map<string, BundlePolicySet>([
  [HASH_A, { hash: HASH_A, ...SET_A }],
  [HASH_B, { hash: HASH_B, ...SET_B }],
]);

/** Decisions under set A then B, each with its body; a reload between; other acts. */
function event(i: number): AuditEvent {
  if (i % 5 === 4) {
    return { type: 'runtime.enrolled', subject: `rt_${i}`, digest: sha(`other ${i}`) };
  }
  const body = JSON.stringify({ runtimeId: `rt_${i % 3}`, action: 'tickets.read', n: i });
  return {
    type: 'grant.decision',
    subject: `gr_${i}`,
    decision: i % 3 === 0 ? 'deny' : 'allow',
    reasons: [`pol:${i < 20 ? HASH_A : HASH_B}`],
    digest: sha(body),
    body,
  };
}

const databases = new TempDatabases('grantor-bundle-');

/**
 * A provisioned, ready log on LevelDB (closed by `databases.cleanup()`, after the log) and
 * the memory anchor, with the trust its bundles verify against (no TPM evidence). `same`:
 * another log's signer and a fixed clock, so that equal appends make equal entries (a fork).
 */
async function openLog(
  origin: string,
  maxBatchSize: number,
  same?: { signer: CheckpointSigner; now: () => number },
): Promise<{ log: AuditService; trust: BundleTrust }> {
  const signer = same?.signer ?? testSigner(origin);
  const log = createAudit(
    { origin, minAnchorIntervalMs: 0, maxBatchSize },
    {
      db: await databases.open(),
      anchor: new MemoryAnchor(),
      signer,
      ...(same === undefined ? {} : { now: same.now }),
    },
  );
  await log.provision();
  await log.ready();
  const verifierKey = parseVerifierKey(noteVerifierKey(signer.keyName, signer.publicKey));
  return { log, trust: { verifierKey, skipTpmEvidence: true } };
}

/** The bundle's lines, without their line ends. */
async function bundleOf(
  log: AuditService,
  request: BundleRequest,
  maxEntries?: number,
): Promise<string[]> {
  const opened = await openBundle(
    {
      audit: log,
      policySet: (h) => Promise.resolve(archive.get(h)),
      ...(maxEntries === undefined ? {} : { maxEntries }),
    },
    request,
  );
  const out: string[] = [];
  for await (const l of opened.lines()) out.push(l.trimEnd());
  return out;
}

let audit: AuditService;
let trust: BundleTrust;
const N = 40;

beforeAll(async () => {
  ({ log: audit, trust } = await openLog('grantor.test/bundle', 7));
  // Several batches of different sizes (at most 7 entries each).
  for (let i = 0; i < N; i += 5) {
    await Promise.all([0, 1, 2, 3, 4].map((k) => audit.append(event(i + k))));
  }
}, 60_000);

afterAll(async () => {
  await audit.close();
  await databases.cleanup();
});

const bundle = (request: BundleRequest = {}, maxEntries?: number): Promise<string[]> =>
  bundleOf(audit, request, maxEntries);

async function failure(lines: readonly string[], t: BundleTrust = trust) {
  try {
    await verifyBundle(lines, t);
  } catch (e) {
    if (e instanceof BundleInvalidError) return { problem: e.problem, line: e.line };
    throw e;
  }
  return undefined;
}

const kind = (l: string): string => (JSON.parse(l) as { type: string }).type;
const indexOf = (lines: readonly string[], type: string, nth = 0): number =>
  lines.map((l, i) => [kind(l), i] as const).filter(([k]) => k === type)[nth]?.[1] ?? -1;
function edit(lines: readonly string[], i: number, f: (r: Record<string, unknown>) => void) {
  const copy = [...lines];
  const r = JSON.parse(copy[i] ?? '{}') as Record<string, unknown>;
  f(r);
  copy[i] = JSON.stringify(r);
  return copy;
}

describe('the evidence bundle', () => {
  it('exports the whole log and verifies: entries, bodies, policy sets, batches', async () => {
    const lines = await bundle();
    const report = await verifyBundle(lines, trust);
    expect(report.entries).toBe(N);
    expect(report.treeSize).toBe(N);
    expect(report.bodies).toBe(32);
    expect(report.bodiesAbsent).toBe(0);
    expect(report.policies).toBe(2);
    expect(report.batches).toBeGreaterThan(5);
    expect(report.warnings.join()).toMatch(/TPM evidence NOT checked/);
    expect(kind(lines[0] ?? '')).toBe('header');
    expect(kind(lines.at(-1) ?? '')).toBe('end');
  });

  it('verifies every sub-range, with and without since, against the same checkpoint', async () => {
    const boundaries = (await audit.batches(0, 100)).map((b) => b.size);
    for (const [from, to] of [
      [1, 40],
      [0, 13],
      [7, 8],
      [13, 29],
      [39, 40],
      [20, 33],
    ] as const) {
      for (const since of [undefined, boundaries[0], boundaries[3]]) {
        const lines = await bundle({ from, to, ...(since === undefined ? {} : { since }) });
        const r = await verifyBundle(lines, trust);
        expect([r.from, r.to, r.entries, r.since]).toEqual([from, to, to - from, since ?? null]);
      }
    }
  });

  it('refuses ranges that make no bundle, before any byte', async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (e as { code?: string }).code,
      );
    expect(await code(bundle({ from: 0, to: 41 }))).toBe('audit_query_invalid');
    expect(await code(bundle({ from: 5, to: 5 }))).toBe('audit_query_invalid');
    expect(await code(bundle({ from: 9, to: 3 }))).toBe('audit_query_invalid');
    expect(await code(bundle({ since: 41 }))).toBe('audit_query_invalid');
    expect(await code(bundle({ from: 0, to: 40 }, 39))).toBe('audit_export_range_too_large');
    expect(await code(bundle({ from: 1, to: 40 }, 39))).toBe('ok');
  });
});

describe('a tampered bundle names its first bad line', () => {
  let lines: string[];
  beforeAll(async () => {
    const since = (await audit.batches(0, 1))[0]?.size ?? 1;
    lines = await bundle({ from: 3, to: 30, since });
  });

  it('verifies untouched', async () => {
    expect(await failure(lines)).toBeUndefined();
  });

  it('an edited entry', async () => {
    const i = indexOf(lines, 'entry', 4);
    const bad = edit(lines, i, (r) => {
      (r.entry as Record<string, unknown>).subject = 'rt_someone_else';
    });
    expect(await failure(bad)).toEqual({ problem: 'entry_hash', line: i + 1 });
  });

  it('an edited request body', async () => {
    const i = indexOf(lines, 'body', 2);
    const bad = edit(lines, i, (r) => {
      r.body = String(r.body).replace('tickets.read', 'payments.transfer');
    });
    expect(await failure(bad)).toEqual({ problem: 'body', line: i + 1 });
  });

  it('an edited policy text', async () => {
    const i = indexOf(lines, 'policy', 1);
    const bad = edit(lines, i, (r) => {
      r.policies = { 'b.cedar': '@id("b") permit(principal, action, resource);' };
    });
    expect(await failure(bad)).toEqual({ problem: 'policy', line: i + 1 });
  });

  it('a policy set left out', async () => {
    const i = indexOf(lines, 'policy', 1);
    const end = lines.length - 1;
    const bad = edit(
      lines.filter((_, k) => k !== i),
      end - 1,
      (r) => {
        r.policies = 1;
      },
    );
    expect(await failure(bad)).toEqual({ problem: 'policy_missing', line: end });
    const allowed = await verifyBundle(bad, { ...trust, allowMissingPolicies: true });
    expect(allowed.warnings.join()).toMatch(new RegExp(`names policy set ${HASH_B}`));
  });

  it('an edited batch boundary', async () => {
    const i = indexOf(lines, 'batch', 2);
    const bad = edit(lines, i, (r) => {
      r.root = 'ab'.repeat(32);
    });
    expect(await failure(bad)).toEqual({ problem: 'batch', line: i + 1 });
  });

  it('an edited checkpoint', async () => {
    const bad = edit(lines, 1, (r) => {
      r.note = String(r.note).replace(/\n\d+\n/, '\n41\n');
    });
    expect(await failure(bad)).toEqual({ problem: 'checkpoint', line: 2 });
  });

  it('an edited consistency proof (range, then since)', async () => {
    for (const of of ['range', 'since']) {
      const i = lines.findIndex((l) => l.includes(`"of":"${of}"`));
      const bad = edit(lines, i, (r) => {
        const path = r.path as string[];
        path[0] = 'cd'.repeat(32);
      });
      expect(await failure(bad)).toEqual({ problem: 'consistency', line: i + 1 });
    }
  });

  it('an edited frontier', async () => {
    const bad = edit(lines, 2, (r) => {
      (r.hashes as string[])[0] = 'ef'.repeat(32);
    });
    // The first batch inside the range no longer has its root.
    const first = await failure(bad);
    expect(first?.problem).toBe('batch');
  });

  it('a truncated bundle', async () => {
    expect(await failure(lines.slice(0, -1))).toEqual({
      problem: 'truncated',
      line: lines.length,
    });
    expect(await failure(lines.slice(0, 20))).toEqual({ problem: 'truncated', line: 21 });
  });

  it('reordered entries', async () => {
    const a = indexOf(lines, 'entry', 5);
    const b = indexOf(lines, 'entry', 6);
    const bad = [...lines];
    [bad[a], bad[b]] = [lines[b] ?? '', lines[a] ?? ''];
    expect(await failure(bad)).toEqual({ problem: 'entry_seq', line: a + 1 });
  });

  it('an end record that counts other records', async () => {
    const bad = edit(lines, lines.length - 1, (r) => {
      r.entries = 26;
    });
    expect(await failure(bad)).toEqual({ problem: 'truncated', line: lines.length });
  });

  it('a record after the end', async () => {
    expect(await failure([...lines, lines[3] ?? ''])).toEqual({
      problem: 'format',
      line: lines.length + 1,
    });
  });

  it('arbitrary lines make a report or a BundleInvalidError, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.string(), fc.json(), fc.constantFrom(...lines)), { maxLength: 12 }),
        async (arbitrary) => {
          await verifyBundle(arbitrary, trust).catch((e: unknown) => {
            if (!(e instanceof BundleInvalidError)) throw e;
          });
        },
      ),
    );
  });
});

describe('a bundle of a later log period', () => {
  it('verifies with the anchor chain starting at its link, and refuses a bundle without it or with a forged one', async () => {
    const { log, trust: periodTrust } = await openLog('grantor.test/bundle-period', 3);
    try {
      for (let i = 0; i < 7; i++) await log.append(event(i));
      await log.startPeriod('alice');
      for (let i = 7; i < 12; i++) await log.append(event(i));
      const lines = (request: BundleRequest): Promise<string[]> => bundleOf(log, request);
      const whole = await lines({});
      const linkAt = whole.findIndex((l) => l.includes('"type":"link"'));
      expect(linkAt).toBe(3);
      await expect(verifyBundle(whole, periodTrust)).resolves.toBeDefined();
      const tail = await lines({ from: 3 });
      await expect(verifyBundle(tail, periodTrust)).resolves.toBeDefined();

      const refused = async (bad: readonly string[]): Promise<string | undefined> => {
        try {
          await verifyBundle(bad, periodTrust);
          return undefined;
        } catch (e) {
          return e instanceof BundleInvalidError ? e.problem : 'other';
        }
      };
      // Without the link the chain would start at the provisioned value: refused by name.
      expect(await refused(tail.filter((l) => !l.includes('"type":"link"')))).toBe('link');
      const link = JSON.parse(tail[3] ?? '{}') as {
        entry: { facts: { previousExtend: string } };
        path: string[];
      };
      const forgedPath = {
        ...link,
        path: link.path.map((h, i) => (i === 0 ? 'ab'.repeat(32) : h)),
      };
      expect(await refused(tail.map((l, i) => (i === 3 ? JSON.stringify(forgedPath) : l)))).toBe(
        'link',
      );
      const forgedBase = {
        ...link,
        entry: { ...link.entry, facts: { ...link.entry.facts, previousExtend: 'cd'.repeat(32) } },
      };
      expect(await refused(tail.map((l, i) => (i === 3 ? JSON.stringify(forgedBase) : l)))).toBe(
        'link',
      );
    } finally {
      await log.close();
    }
  });
});

describe('a bundle of a frozen log period', () => {
  let log: AuditService;
  let periodTrust: BundleTrust;
  /** A genuinely signed checkpoint of period 0 before its end (a truncated history). */
  let early: { note: string; size: number };

  beforeAll(async () => {
    ({ log, trust: periodTrust } = await openLog('grantor.test/bundle-frozen', 3));
    for (let i = 0; i < 4; i++) await log.append(event(i));
    const cp = await log.checkpoint();
    early = { note: cp.note, size: cp.treeSize };
    for (let i = 4; i < 7; i++) await log.append(event(i));
    await log.startPeriod('alice');
    for (let i = 7; i < 12; i++) await log.append(event(i));
    await log.startPeriod('bob');
    for (let i = 12; i < 15; i++) await log.append(event(i));
  }, 60_000);

  afterAll(() => log.close());

  const lines = (request: BundleRequest): Promise<string[]> => bundleOf(log, request);
  const refused = async (bad: readonly string[]): Promise<string | undefined> =>
    (await failure(bad, periodTrust))?.problem;

  it('carries the later periods’ links down to the current checkpoint, and verifies', async () => {
    const whole = await lines({ period: 0 });
    expect(kind(whole[0] ?? '')).toBe('header');
    expect(JSON.parse(whole[0] ?? '{}')).toMatchObject({ successors: 2, treeSize: 7 });
    expect(whole.filter((l) => kind(l) === 'successor')).toHaveLength(2);
    const report = await verifyBundle(whole, periodTrust);
    expect(report).toMatchObject({
      origin: 'grantor.test/bundle-frozen',
      entries: 7,
      successors: 2,
    });
    // A middle period: its own link, then one successor; and a sub-range of it.
    await expect(verifyBundle(await lines({ period: 1 }), periodTrust)).resolves.toMatchObject({
      origin: 'grantor.test/bundle-frozen/period-1',
      successors: 1,
    });
    await expect(
      verifyBundle(await lines({ period: 1, from: 2, to: 4 }), periodTrust),
    ).resolves.toBeDefined();
    // The current period exports as before: no successors.
    const current = await lines({ period: 2 });
    expect(JSON.parse(current[0] ?? '{}')).not.toHaveProperty('successors');
    await expect(verifyBundle(current, periodTrust)).resolves.toMatchObject({ successors: 0 });
  });

  it('refuses a period after the current one', async () => {
    await expect(lines({ period: 3 })).rejects.toMatchObject({ code: 'audit_period_not_found' });
  });

  it('refuses a frozen period presented with an earlier (signed) checkpoint: the link names another size and root', async () => {
    const whole = await lines({ period: 0, to: early.size });
    const truncated = edit(
      edit(whole, 0, (r) => {
        r.treeSize = early.size;
      }),
      1,
      (r) => {
        r.note = early.note;
        r.treeSize = early.size;
      },
    );
    expect(await failure(truncated, periodTrust)).toEqual({
      problem: 'chain_link_mismatch',
      line: 3,
    });
  });

  it('refuses a link rewritten to name that earlier checkpoint: it is not leaf 0 of the signed tree', async () => {
    const whole = await lines({ period: 0, to: early.size });
    const body = parseCheckpoint(verifyNote(early.note, periodTrust.verifierKey));
    const forged = edit(
      edit(
        edit(whole, 0, (r) => {
          r.treeSize = early.size;
        }),
        1,
        (r) => {
          r.note = early.note;
          r.treeSize = early.size;
        },
      ),
      2,
      (r) => {
        const link = r.link as AuditEntry;
        const facts = {
          ...(link.facts as PeriodStartedFacts),
          previousSize: early.size,
          previousRoot: body.root.toString('hex'),
          previousCounter: body.counter.toString(),
          previousExtend: body.extendValue.toString('hex'),
        };
        const { hash, ...rest } = { ...link, facts };
        expect(hash).toBe(link.hash);
        r.link = { ...rest, hash: entryHash(rest) };
      },
    );
    expect(await failure(forged, periodTrust)).toEqual({ problem: 'chain_link_proof', line: 3 });
  });

  it('refuses a link proof for another tree', async () => {
    const whole = await lines({ period: 0 });
    const other = await (await log.inPeriod(1)).inclusionProof(0, 2);
    const at = indexOf(whole, 'successor');
    const bad = edit(whole, at, (r) => {
      r.path = [...other.path];
    });
    expect(await failure(bad, periodTrust)).toEqual({ problem: 'chain_link_proof', line: at + 1 });
  });

  it('refuses a missing link, first or last', async () => {
    const whole = await lines({ period: 0 });
    const first = indexOf(whole, 'successor', 0);
    const second = indexOf(whole, 'successor', 1);
    const frontier = indexOf(whole, 'frontier');
    const withoutFirst = whole.filter((_, i) => i < first || i >= second);
    expect(await refused(withoutFirst)).toBe('chain_missing');
    const withoutLast = whole.filter((_, i) => i < second || i >= frontier);
    expect(await refused(withoutLast)).toBe('chain_missing');
  });

  it('refuses a successor batch edited or left out (the link no longer reaches its anchor state)', async () => {
    const whole = await lines({ period: 0 });
    const at = indexOf(whole, 'successor_batch', 1);
    const edited = edit(whole, at, (r) => {
      r.root = 'ab'.repeat(32);
    });
    expect(await refused(edited)).toBe('chain_anchor');
    expect(await refused(whole.filter((_, i) => i !== at))).toBe('chain_anchor');
  });

  it('refuses a successor checkpoint not signed with the pinned key', async () => {
    const whole = await lines({ period: 0 });
    const at = indexOf(whole, 'successor');
    const bad = edit(whole, at, (r) => {
      const cp = r.checkpoint as { note: string };
      // Another size in the signed text: the signature no longer covers it.
      r.checkpoint = {
        ...cp,
        note: cp.note.replace(/\n(\d+)\n/, (_m, d: string) => `\n${Number(d) + 1}\n`),
      };
    });
    expect(await refused(bad)).toBe('chain_checkpoint');
  });
});

describe('two consecutive periods’ bundles compared across the link', () => {
  const T = Date.parse('2026-01-01T00:00:00Z');
  const signer = testSigner('grantor.test/bundle-pair');
  const same = { signer, now: () => T };
  let log: AuditService;
  let pairTrust: BundleTrust;
  /** Period 0 exported while current: after 4 entries, and at its final 7. */
  let early: string[];
  let atEnd: string[];
  /** The same key and history, switched after 4 entries / after 7 by another actor. */
  let forkAt4: AuditService;
  let forkAt7: AuditService;

  const appendAll = async (to: AuditService, from: number, until: number): Promise<void> => {
    for (let i = from; i < until; i++) await to.append(event(i));
  };

  beforeAll(async () => {
    ({ log, trust: pairTrust } = await openLog('grantor.test/bundle-pair', 3, same));
    ({ log: forkAt4 } = await openLog('grantor.test/bundle-pair', 3, same));
    ({ log: forkAt7 } = await openLog('grantor.test/bundle-pair', 3, same));
    for (const l of [log, forkAt4, forkAt7]) await appendAll(l, 0, 4);
    early = await bundleOf(log, { period: 0 });
    await forkAt4.startPeriod('mallory');
    for (const l of [log, forkAt7]) await appendAll(l, 4, 7);
    atEnd = await bundleOf(log, { period: 0 });
    await forkAt7.startPeriod('mallory');
    await log.startPeriod('alice');
    await appendAll(log, 7, 12);
    await log.startPeriod('bob');
    await appendAll(log, 12, 15);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([log.close(), forkAt4.close(), forkAt7.close()]);
  });

  const report = async (lines: readonly string[]) => verifyBundle(lines, pairTrust);
  const period = async (l: AuditService, p: number) => report(await bundleOf(l, { period: p }));
  function problemOf(a: BundleReport, b: BundleReport) {
    try {
      verifyBundlePair(a, b);
      return undefined;
    } catch (e) {
      if (e instanceof BundlePairInvalidError) return e.problem;
      throw e;
    }
  }
  const pairProblem = async (a: readonly string[], b: readonly string[]) =>
    problemOf(await report(a), await report(b));

  it('ties a frozen period to the next by the link its own successor chain carries', async () => {
    const [p0, p1, p2] = await Promise.all([0, 1, 2].map((p) => period(log, p)));
    if (p0 === undefined || p1 === undefined || p2 === undefined) throw new Error('no reports');
    expect(verifyBundlePair(p0, p1)).toMatchObject({
      log: 'grantor.test/bundle-pair',
      end: { period: 0, size: 7, counter: p0.end.counter },
      linkHash: p1.link?.hash,
      tiedBy: 'successor_chain',
    });
    expect(verifyBundlePair(p0, p1).warnings).toEqual([]);
    // A frozen period and the current one after it.
    expect(verifyBundlePair(p1, p2).tiedBy).toBe('successor_chain');
  });

  it('ties sub-ranges too, naming the entries neither bundle carries', async () => {
    const a = await report(await bundleOf(log, { period: 0, from: 2, to: 5 }));
    const b = await report(await bundleOf(log, { period: 1, from: 3, to: 4 }));
    expect(verifyBundlePair(a, b)).toMatchObject({
      tiedBy: 'successor_chain',
      warnings: [
        'entries 5..6 of period 0 are in neither bundle',
        'entries 1..2 of period 1 are in neither bundle',
      ],
    });
  });

  it('ties a bundle exported while current to the next period when the link names exactly its checkpoint', async () => {
    const tie = verifyBundlePair(await report(atEnd), await period(log, 1));
    expect(tie).toMatchObject({ tiedBy: 'exported_at_end', end: { size: 7 } });
  });

  it('refuses A exported while current, before its final checkpoint (pair_not_final)', async () => {
    expect(await pairProblem(early, await bundleOf(log, { period: 1 }))).toBe('pair_not_final');
  });

  it('refuses a gap of two periods, and the same period twice (pair_not_consecutive)', async () => {
    const [p0, p2] = await Promise.all([0, 2].map((p) => bundleOf(log, { period: p })));
    expect(await pairProblem(p0 ?? [], p2 ?? [])).toBe('pair_not_consecutive');
    expect(await pairProblem(p0 ?? [], p0 ?? [])).toBe('pair_not_consecutive');
  });

  it('refuses the files swapped (pair_order)', async () => {
    const [p0, p1] = await Promise.all([0, 1].map((p) => bundleOf(log, { period: p })));
    expect(await pairProblem(p1 ?? [], p0 ?? [])).toBe('pair_order');
  });

  it('refuses a B whose link names an earlier, genuinely signed checkpoint of A’s period (pair_link_mismatch)', async () => {
    // The fork signed with the same key holds exactly the first 4 entries: its link names
    // the checkpoint `early` is certified at, and its period 1 verifies on its own.
    const forked = await bundleOf(forkAt4, { period: 1 });
    const b = await report(forked);
    expect(b.link?.facts).toMatchObject({ previousSize: 4 });
    expect(verifyBundlePair(await report(early), b).tiedBy).toBe('exported_at_end');
    expect(await pairProblem(await bundleOf(log, { period: 0 }), forked)).toBe(
      'pair_link_mismatch',
    );
  });

  it('refuses a B whose link names A’s final end but is not the link A’s chain carries (pair_chain_mismatch)', async () => {
    const forked = await bundleOf(forkAt7, { period: 1 });
    expect((await report(forked)).link?.facts).toMatchObject({ previousSize: 7 });
    expect(await pairProblem(await bundleOf(log, { period: 0 }), forked)).toBe(
      'pair_chain_mismatch',
    );
  });

  it('refuses bundles of two logs (pair_other_log)', async () => {
    const { log: other, trust: otherTrust } = await openLog('grantor.test/bundle-pair-other', 3);
    try {
      await other.append(event(0));
      await other.startPeriod('olga');
      const b = await verifyBundle(await bundleOf(other, { period: 1 }), otherTrust);
      expect(problemOf(await period(log, 0), b)).toBe('pair_other_log');
    } finally {
      await other.close();
    }
  });
});
