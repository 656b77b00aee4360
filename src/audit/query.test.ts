import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type Database } from '../shared/db.level.js';
import { jcs } from '../shared/jcs.js';
import { MemoryAnchor } from './anchor.memory.js';
import { LevelAuditStore } from './audit-store.level.js';
import type { AuditEntry, AuditEvent } from './entry.js';
import type { GrantDecisionFacts } from './facts.js';
import { createAudit } from './index.js';
import { matches, type AuditFilter } from './query.js';
import type { AuditService } from './service.js';
import { verifyExport } from './verify-export.js';
import { TempDatabases, testSigner } from './testing.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

const databases = new TempDatabases('grantor-audit-query-');
afterEach(() => databases.cleanup());

async function service(
  options: { maxQueryScan?: number; maxPageSize?: number; now?: () => number } = {},
): Promise<{ audit: AuditService; db: Database }> {
  const db = await databases.open();
  const origin = 'grantor.test/query';
  const { now, ...config } = options;
  const audit = createAudit(
    { origin, minAnchorIntervalMs: 0, ...config },
    {
      db,
      anchor: new MemoryAnchor(),
      signer: testSigner(origin),
      ...(now === undefined ? {} : { now }),
    },
  );
  await audit.provision();
  await audit.ready();
  return { audit, db };
}

const decisionFacts = (runtime: string, parent: string | null): GrantDecisionFacts => ({
  runtime,
  action: 'payments.transfer',
  resource: 'acct/1',
  audience: 'gw-payments',
  parent,
  requestId: 'req-1',
  parametersDigest: sha('params'),
  proofMode: 'session',
  attestationId: 'att_1',
  policyHash: sha('policy'),
  matchedPolicies: ['allow-payments'],
  keyId: 'k1',
  expiresAt: '2026-01-01T00:05:00.000Z',
});

async function everything(audit: AuditService): Promise<AuditEntry[]> {
  const size = (await audit.checkpoint()).treeSize;
  const out: AuditEntry[] = [];
  while (out.length < size) out.push(...(await audit.entries(out.length, 1000)));
  return out;
}

async function allPages(
  audit: AuditService,
  filter: AuditFilter,
  limit: number,
): Promise<{ entries: AuditEntry[]; pages: number }> {
  const out: AuditEntry[] = [];
  let cursor: number | null = 0;
  let pages = 0;
  while (cursor !== null) {
    const page = await audit.query(filter, cursor, limit);
    expect(page.entries.length).toBeLessThanOrEqual(limit);
    out.push(...page.entries);
    pages += 1;
    if (page.next !== null) expect(page.next).toBeGreaterThan(cursor);
    cursor = page.next;
  }
  return { entries: out, pages };
}

const TYPES = ['grant.decision', 'grant.refused', 'runtime.enroll', 'operator.act'] as const;
const SUBJECTS = ['rt_a', 'rt_b', 'gr_1', 'gr_2'];
const DECISIONS = [undefined, 'allow', 'deny'];

const arbEvent = fc
  .record({
    type: fc.constantFrom(...TYPES),
    subject: fc.constantFrom(...SUBJECTS),
    decision: fc.constantFrom(...DECISIONS),
    runtime: fc.constantFrom('rt_a', 'rt_b'),
    parent: fc.constantFrom(null, 'gr_1'),
    n: fc.nat(1000),
  })
  .map(({ type, subject, decision, runtime, parent, n }): AuditEvent => {
    const base = {
      type,
      subject,
      ...(decision === undefined ? {} : { decision }),
      digest: sha(`${n}`),
    };
    if (type === 'grant.decision') return { ...base, facts: decisionFacts(runtime, parent) };
    return base;
  });

const arbFilter: fc.Arbitrary<AuditFilter> = fc
  .record(
    {
      type: fc.constantFrom(...TYPES, 'none.such'),
      subject: fc.constantFrom(...SUBJECTS, 'rt_zzz'),
      decision: fc.constantFrom('allow', 'deny'),
      since: fc.integer({ min: 0, max: 12 }),
      until: fc.integer({ min: 0, max: 12 }),
    },
    { requiredKeys: [] },
  )
  .map(({ since, until, ...rest }) => ({
    ...rest,
    ...(since === undefined
      ? {}
      : { since: new Date(Date.UTC(2026, 0, 1, 0, since)).toISOString() }),
    ...(until === undefined
      ? {}
      : { until: new Date(Date.UTC(2026, 0, 1, 0, until)).toISOString() }),
  }));

describe('audit entry queries', () => {
  it('every filter answers, over all its pages, exactly what a full scan finds (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Each batch at its own minute: mostly later, sometimes the same or earlier (a clock
        // stepped back), so time ranges go through the time index's rises and step-backs.
        fc.array(
          fc.record({
            events: fc.array(arbEvent, { minLength: 1, maxLength: 8 }),
            step: fc.constantFrom(1, 1, 1, 0, 2, -3),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        fc.array(arbFilter, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 9 }),
        async (batches, filters, limit, maxScan) => {
          let minute = 3;
          const { audit } = await service({
            maxQueryScan: maxScan,
            now: () => Date.UTC(2026, 0, 1, 0, minute),
          });
          for (const batch of batches) {
            await Promise.all(batch.events.map((e) => audit.append(e)));
            minute = Math.max(0, minute + batch.step);
          }
          const all = await everything(audit);
          for (const filter of filters) {
            const got = await allPages(audit, filter, limit);
            expect(got.entries.map((e) => e.seq)).toEqual(
              all.filter((e) => matches(e, filter)).map((e) => e.seq),
            );
          }
          await audit.close();
        },
      ),
      { numRuns: 30 },
    );
  }, 120_000);

  it('answers a time range through the time index, not by scanning from the start', async () => {
    let minute = 0;
    // Four entries per page examined: a scan from seq 0 would answer the last minutes'
    // entries only after many empty pages.
    const { audit } = await service({
      maxQueryScan: 4,
      now: () => Date.UTC(2026, 0, 1, 0, minute),
    });
    for (minute = 0; minute < 60; minute += 1) {
      await audit.append({
        type: 'runtime.enroll',
        subject: `rt_${minute}`,
        digest: sha(`${minute}`),
      });
    }
    const since = new Date(Date.UTC(2026, 0, 1, 0, 57)).toISOString();
    const until = new Date(Date.UTC(2026, 0, 1, 0, 59)).toISOString();
    const page = await audit.query({ since, until }, 0, 10);
    expect(page.entries.map((e) => e.subject)).toEqual(['rt_57', 'rt_58']);
    expect(page.next).toBeNull();
    // With a term too: the term index is read from the range's first seq.
    const typed = await audit.query({ type: 'runtime.enroll', since }, 0, 10);
    expect(typed.entries.map((e) => e.subject)).toEqual(['rt_57', 'rt_58', 'rt_59']);
    expect(typed.next).toBeNull();
  });

  it('finds entries of a clock that stepped back inside a range that ended before', async () => {
    let minute = 10;
    const { audit } = await service({ now: () => Date.UTC(2026, 0, 1, 0, minute) });
    await audit.append({ type: 'runtime.enroll', subject: 'rt_10', digest: sha('10') });
    minute = 20;
    await audit.append({ type: 'runtime.enroll', subject: 'rt_20', digest: sha('20') });
    minute = 5; // the clock stepped back
    await audit.append({ type: 'runtime.enroll', subject: 'rt_5', digest: sha('5') });
    minute = 30;
    await audit.append({ type: 'runtime.enroll', subject: 'rt_30', digest: sha('30') });
    const at = (m: number): string => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
    const subjects = async (f: AuditFilter): Promise<string[]> =>
      (await audit.query(f, 0, 10)).entries.map((e) => e.subject);
    expect(await subjects({ until: at(11) })).toEqual(['rt_10', 'rt_5']);
    expect(await subjects({ since: at(4), until: at(6) })).toEqual(['rt_5']);
    expect(await subjects({ since: at(15) })).toEqual(['rt_20', 'rt_30']);
    expect(await subjects({ since: at(31) })).toEqual([]);
  });

  it('finds a grant decision under its runtime and its parent, not only its subject', async () => {
    const { audit } = await service();
    await audit.append({
      type: 'grant.decision',
      subject: 'gr_child',
      decision: 'allow',
      digest: sha('x'),
      facts: decisionFacts('rt_owner', 'gr_parent'),
    });
    for (const subject of ['gr_child', 'rt_owner', 'gr_parent']) {
      const page = await audit.query({ subject }, 0, 10);
      expect(page.entries.map((e) => e.subject)).toEqual(['gr_child']);
    }
    expect((await audit.query({ subject: 'rt_other' }, 0, 10)).entries).toEqual([]);
  });

  it('writes index terms in the same synced batch as the entries (store contents)', async () => {
    const { audit, db } = await service();
    await audit.append({
      type: 'grant.refused',
      subject: 'rt_a',
      decision: 'session_not_live',
      digest: sha('r'),
    });
    const store = new LevelAuditStore(db);
    const seqs: number[] = [];
    for await (const s of store.scanIndex('decision:session_not_live', 0, 10)) seqs.push(s);
    expect(seqs).toEqual([0]);
    expect(await store.indexedFrom()).toBe(0);
  });

  it('indexes one batch larger than a call may have arguments (a large maxBatchSize)', async () => {
    // 70,000 entries, three index terms each: 210,000 keys, more than one spread push takes.
    const size = 70_000;
    const entries = Array.from({ length: size }, (_, seq) => ({
      seq,
      type: 'grant.decision',
      subject: `gr_${seq}`,
      decision: 'allow',
      time: '2026-12-03T08:00:00.000Z',
    }));
    const store = new LevelAuditStore(await databases.open());
    const batch = { index: 0, size, root: '00'.repeat(32), extend: '00'.repeat(32) };
    await store.appendBatch({ entries, batch, bodies: [], tiles: [] });
    const seqs: number[] = [];
    for await (const s of store.scanIndex('decision:allow', size - 2, 10)) seqs.push(s);
    expect(seqs).toEqual([size - 2, size - 1]);
  }, 120_000);

  it('keeps a request body by its digest, and refuses one that is not what the digest names', async () => {
    const { audit } = await service();
    const body = jcs({ runtimeId: 'rt_a', action: 'read' });
    await audit.append({ type: 'grant.decision', subject: 'gr_1', digest: sha(body), body });
    expect(await audit.body(sha(body))).toBe(body);
    await expect(audit.body(sha('other'))).rejects.toMatchObject({ code: 'not_found' });
    await expect(audit.body('nothex')).rejects.toMatchObject({ code: 'bad_request' });
    await expect(
      audit.append({ type: 'grant.decision', subject: 'gr_2', digest: sha('a'), body: 'b' }),
    ).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('answers a body from the store only if it still hashes to its digest', async () => {
    const { audit, db } = await service();
    const body = jcs({ a: 1 });
    await audit.append({ type: 'grant.decision', subject: 'gr_1', digest: sha(body), body });
    const sub = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await sub.put(`r!${sha(body)}`, jcs({ a: 2 }));
    await expect(audit.body(sha(body))).rejects.toMatchObject({ code: 'not_found' });
  });

  it('bounds a page by the page size and rejects a bad cursor or limit', async () => {
    const { audit } = await service({ maxPageSize: 3 });
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        audit.append({ type: 'runtime.enroll', subject: `rt_${i}`, digest: sha(`${i}`) }),
      ),
    );
    const page = await audit.query({}, 0, 100);
    expect(page.entries).toHaveLength(3);
    expect(page.next).toBe(3);
    await expect(audit.query({}, -1, 10)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(audit.query({}, 0, 0)).rejects.toMatchObject({ code: 'bad_request' });
  });
});

describe('offline verification of a log with version-1 and version-2 entries', () => {
  it('verifies both, and names an edited fact as a broken entry', async () => {
    const { audit } = await service();
    await audit.append({ type: 'runtime.enroll', subject: 'rt_a', digest: sha('v1') });
    await audit.append({
      type: 'grant.decision',
      subject: 'gr_1',
      decision: 'allow',
      digest: sha('v2'),
      facts: decisionFacts('rt_a', null),
    });
    const exported = await audit.exportLog();
    const key = exported.noteVerifierKey;
    const result = verifyExport(JSON.parse(JSON.stringify(exported)), key, {
      skipTpmEvidence: true,
    });
    expect(result.treeSize).toBe(2);
    const edited = JSON.parse(JSON.stringify(exported)) as {
      entries: { facts?: { runtime: string } }[];
    };
    const fact = edited.entries[1]?.facts;
    if (fact !== undefined) fact.runtime = 'rt_b';
    expect(() => verifyExport(edited, key, { skipTpmEvidence: true })).toThrow(/entry 1/);
  });
});
