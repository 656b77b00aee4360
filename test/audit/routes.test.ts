/**
 * The audit routes through app.inject() on the configured server, with the real adapters
 * (LevelDB store, NV anchor in swtpm): schemas, proofs bounded by the checkpoint, NV_Certify
 * with a nonce, and the 503 codes when the log is unavailable or refused.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { parseCheckpoint, parseVerifierKey, verifyNote } from '../../src/audit/checkpoint.js';
import { createAudit } from '../../src/audit/index.js';
import type { AuditService } from '../../src/audit/service.js';
import { createServer } from '../../src/http/app.js';
import { auditRoutes } from '../../src/http/routes/audit.js';
import { auditTlogRoutes } from '../../src/http/routes/audit-tlog.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { event, provisionAnchor, tempDir, tearDownTpm } from './helpers.js';
import { testSigner } from './signer.js';

const ORIGIN = 'grantor.test/routes';
let sim: SimTpm;
let tpm: NativeTpm;
let config: TpmAnchorConfig;
let work: string;
let db: Database;
let audit: AuditService;
let app: ReturnType<typeof createServer>;

const H = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

beforeAll(async () => {
  sim = await startSimTpm();
  tpm = await NativeTpm.open(sim.tcti);
  config = await provisionAnchor(tpm);
  work = await tempDir('grantor-audit-routes-');
  db = await openDatabase(join(work, 'db'));
  audit = createAudit(
    { origin: ORIGIN, minAnchorIntervalMs: 0 },
    { db, anchor: new TpmAuditAnchor(tpm, config), signer: testSigner(ORIGIN) },
  );
  await audit.provision();
  await audit.ready();
  for (let i = 0; i < 3; i++) await audit.append(event(i));
  await Promise.all(Array.from({ length: 10 }, (_, i) => audit.append(event(3 + i))));
  app = createServer();
  await app.register(auditRoutes, { audit });
  await app.register(auditTlogRoutes, { audit });
  await app.ready();
});

afterAll(() =>
  tearDownTpm(
    async () => {
      await app.close();
      await audit.close();
      await db.close();
      await tpm.close();
    },
    [sim],
    work,
  ),
);

describe('audit routes', () => {
  it('GET /v1/audit/checkpoint: a signed note that verifies with /v1/audit/verifier', async () => {
    const v = await app.inject({ method: 'GET', url: '/v1/audit/verifier' });
    expect(v.statusCode).toBe(200);
    const verifier = v.json<{ noteVerifierKey: string; origin: string; akPublic?: string }>();
    expect(verifier.origin).toBe(ORIGIN);
    expect(verifier.akPublic).toBeDefined();
    const res = await app.inject({ method: 'GET', url: '/v1/audit/checkpoint' });
    expect(res.statusCode).toBe(200);
    const cp = res.json<{ note: string; treeSize: number; nvCounter: string }>();
    const body = parseCheckpoint(verifyNote(cp.note, parseVerifierKey(verifier.noteVerifierKey)));
    expect(body.size).toBe(13);
    expect(cp.treeSize).toBe(13);
    const anchored = await new TpmAuditAnchor(tpm, config).read();
    expect(body.counter).toBe(anchored.counter);
    expect(body.extendValue.equals(anchored.extendValue)).toBe(true);
  });

  it('GET /v1/audit/checkpoint?nonce=: NV_Certify of both indices with that nonce', async () => {
    const nonce = 'ab'.repeat(32);
    const res = await app.inject({ method: 'GET', url: `/v1/audit/checkpoint?nonce=${nonce}` });
    expect(res.statusCode).toBe(200);
    const cp = res.json<{ nonce: string; nvCertify: { index: string; attest: string }[] }>();
    expect(cp.nonce).toBe(nonce);
    expect(cp.nvCertify.map((c) => c.index)).toEqual(['counter', 'extend']);
    for (const c of cp.nvCertify) {
      expect(Buffer.from(c.attest, 'base64').includes(Buffer.from(nonce, 'hex'))).toBe(true);
    }
  });

  it.each(['zz', 'abc', 'ab'.repeat(33), ''])(
    'refuses nonce=%s with 400 bad_request',
    async (nonce) => {
      const res = await app.inject({ method: 'GET', url: `/v1/audit/checkpoint?nonce=${nonce}` });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: { code: 'bad_request' } });
    },
  );

  it('GET /v1/audit/batches: boundaries that recompute the TPM extend value and counter', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/audit/batches?from=0' });
    expect(res.statusCode).toBe(200);
    const { batches } = res.json<{ batches: { index: number; size: number; root: string }[] }>();
    expect(batches.map((b) => b.index)).toEqual(batches.map((_, i) => i));
    expect(batches.at(-1)?.size).toBe(13);
    let e: Buffer = Buffer.from(GENESIS_EXTEND);
    for (const b of batches) e = extendDigest(e, Buffer.from(b.root, 'hex'));
    const anchored = await new TpmAuditAnchor(tpm, config).read();
    expect(e.equals(anchored.extendValue)).toBe(true);
    expect(anchored.counter).toBe((config.pinnedGenesis ?? 0n) + BigInt(batches.length));
    const page = await app.inject({ method: 'GET', url: '/v1/audit/batches?from=1&limit=1' });
    expect(page.json()).toEqual({ period: 0, batches: [batches[1]] });
    const beyond = await app.inject({
      method: 'GET',
      url: `/v1/audit/batches?from=${batches.length}`,
    });
    expect(beyond.statusCode).toBe(404);
    expect(beyond.json()).toMatchObject({ error: { code: 'not_found' } });
    const bad = await app.inject({ method: 'GET', url: '/v1/audit/batches?from=-1' });
    expect(bad.statusCode).toBe(400);
    // The verifier publishes the pin for auditors to compare with theirs.
    const v = await app.inject({ method: 'GET', url: '/v1/audit/verifier' });
    expect(v.json()).toMatchObject({
      anchorPin: {
        names: config.pinnedNames,
        genesisCounter: String(config.pinnedGenesis),
      },
    });
  });

  it('GET /v1/audit/entries pages through the chain', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/audit/entries?from=2&limit=3' });
    expect(res.statusCode).toBe(200);
    const { entries } = res.json<{ entries: { seq: number; prevHash: string; hash: string }[] }>();
    expect(entries.map((e) => e.seq)).toEqual([2, 3, 4]);
    expect(entries[1]!.prevHash).toBe(entries[0]!.hash);
    const beyond = await app.inject({ method: 'GET', url: '/v1/audit/entries?from=13' });
    expect(beyond.statusCode).toBe(404);
    expect(beyond.json()).toMatchObject({ error: { code: 'not_found' } });
    const bad = await app.inject({ method: 'GET', url: '/v1/audit/entries?limit=0' });
    expect(bad.json()).toMatchObject({ error: { code: 'bad_request' } });
  });

  it('GET /v1/audit/proof/inclusion: the path leads to the checkpoint root', async () => {
    const cp = (await app.inject({ method: 'GET', url: '/v1/audit/checkpoint' })).json<{
      rootHash: string;
    }>();
    const res = await app.inject({
      method: 'GET',
      url: '/v1/audit/proof/inclusion?seq=12&size=13',
    });
    expect(res.statusCode).toBe(200);
    const proof = res.json<{ seq: number; treeSize: number; leafHash: string; path: string[] }>();
    // Leaf 12 of 13: right child of [8, 13) whose left is [8, 12), under [0, 8).
    expect(proof.path).toHaveLength(2);
    const one = Buffer.from([1]);
    const right = H(one, Buffer.from(proof.path[0]!, 'hex'), Buffer.from(proof.leafHash, 'hex'));
    const root = H(one, Buffer.from(proof.path[1]!, 'hex'), right);
    expect(root.toString('base64')).toBe(cp.rootHash);
    const entry = (
      await app.inject({ method: 'GET', url: '/v1/audit/entries?from=12&limit=1' })
    ).json<{
      entries: { hash: string }[];
    }>().entries[0]!;
    expect(H(Buffer.from([0]), Buffer.from(entry.hash, 'hex')).toString('hex')).toBe(
      proof.leafHash,
    );
  });

  it('GET /v1/audit/proof/consistency', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/v1/audit/proof/consistency?from=3&to=13',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ path: string[] }>().path.length).toBeGreaterThan(0);
  });

  it.each([
    '/v1/audit/proof/inclusion?seq=0&size=14',
    '/v1/audit/proof/inclusion?seq=13&size=13',
    '/v1/audit/proof/consistency?from=3&to=14',
    '/v1/audit/proof/consistency?from=5&to=4',
    '/v1/audit/proof/consistency?from=0&to=4',
    '/v1/audit/proof/inclusion?seq=-1&size=4',
    '/v1/audit/proof/inclusion?seq=1',
  ])('refuses %s with 400 bad_request', async (url) => {
    const res = await app.inject({ method: 'GET', url });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'bad_request' } });
  });

  it('answers 503 audit_rollback_detected for a refused log, revealing nothing internal', async () => {
    const otherDb = await openDatabase(join(work, 'empty'));
    // An empty store on an anchor that has recorded batches: refused at start.
    const refused = createAudit(
      { origin: ORIGIN, minAnchorIntervalMs: 0 },
      { db: otherDb, anchor: new TpmAuditAnchor(tpm, config), signer: testSigner(ORIGIN) },
    );
    await expect(refused.ready()).rejects.toMatchObject({ code: 'audit_rollback_detected' });
    const app2 = createServer();
    await app2.register(auditRoutes, { audit: refused });
    for (const url of [
      '/v1/audit/checkpoint',
      '/v1/audit/entries',
      '/v1/audit/proof/inclusion?seq=0&size=1',
    ]) {
      const res = await app2.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({
        error: {
          code: 'audit_rollback_detected',
          message: 'the audit log does not match its TPM anchor; an operator must act',
        },
      });
    }
    await app2.close();
    await refused.close();
    await otherDb.close();
  });

  it('answers 503 audit_unavailable before the log is ready', async () => {
    const otherDb = await openDatabase(join(work, 'not-ready'));
    const notReady = createAudit(
      { origin: ORIGIN, minAnchorIntervalMs: 0 },
      { db: otherDb, anchor: new TpmAuditAnchor(tpm, config), signer: testSigner(ORIGIN) },
    );
    const app2 = createServer();
    await app2.register(auditRoutes, { audit: notReady });
    const res = await app2.inject({ method: 'GET', url: '/v1/audit/checkpoint' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: { code: 'audit_unavailable' } });
    await app2.close();
    await otherDb.close();
  });
});

describe('audit routes across log periods', () => {
  it('names the period in every answer, serves a frozen one, and lists them', async () => {
    const before = await app.inject({ method: 'GET', url: '/v1/audit/checkpoint' });
    const frozen = before.json<{ period: number; treeSize: number; rootHash: string }>();
    expect(frozen.period).toBe(audit.currentPeriod());
    const started = await audit.startPeriod('olga');
    expect(started.period).toBe(frozen.period + 1);
    await audit.append(event(100));

    const cp = await app.inject({ method: 'GET', url: '/v1/audit/checkpoint' });
    expect(cp.json()).toMatchObject({
      period: started.period,
      origin: `${ORIGIN}/period-${started.period}`,
      treeSize: 2,
    });
    // The frozen period: its final checkpoint, entries and proofs, each naming it.
    const old = await app.inject({
      method: 'GET',
      url: `/v1/audit/checkpoint?period=${frozen.period}`,
    });
    expect(old.json()).toMatchObject({
      period: frozen.period,
      treeSize: frozen.treeSize,
      rootHash: frozen.rootHash,
    });
    const proof = await app.inject({
      method: 'GET',
      url: `/v1/audit/proof/inclusion?seq=1&size=${frozen.treeSize}&period=${frozen.period}`,
    });
    expect(proof.statusCode).toBe(200);
    expect(proof.json()).toMatchObject({ period: frozen.period, treeSize: frozen.treeSize });
    const batches = await app.inject({
      method: 'GET',
      url: `/v1/audit/batches?period=${started.period}`,
    });
    expect(batches.json()).toMatchObject({ period: started.period });
    expect(batches.json<{ batches: { index: number; size: number }[] }>().batches[0]).toMatchObject(
      { index: 0, size: 1 },
    );
    // The tlog-tiles routes serve every period: the frozen one's final tree, the new one's.
    const tlogOld = await app.inject({
      method: 'GET',
      url: `/v1/audit/tlog/${frozen.period}/checkpoint`,
    });
    expect(tlogOld.statusCode).toBe(200);
    expect(tlogOld.body.split('\n')[1]).toBe(String(frozen.treeSize));
    expect(tlogOld.body).toBe(old.json<{ note: string }>().note);
    const tlogNew = await app.inject({
      method: 'GET',
      url: `/v1/audit/tlog/${started.period}/checkpoint`,
    });
    expect(tlogNew.body.startsWith(`${ORIGIN}/period-${started.period}\n2\n`)).toBe(true);
    const oldTile = await app.inject({
      method: 'GET',
      url: `/v1/audit/tlog/${frozen.period}/tile/0/000.p/${frozen.treeSize}`,
    });
    expect(oldTile.statusCode).toBe(200);
    expect(oldTile.rawPayload.length).toBe(32 * frozen.treeSize);
    const newTile = await app.inject({
      method: 'GET',
      url: `/v1/audit/tlog/${started.period}/tile/0/000.p/${frozen.treeSize}`,
    });
    expect(newTile.json()).toMatchObject({ error: { code: 'audit_tile_width_mismatch' } });
    const list = await app.inject({ method: 'GET', url: '/v1/audit/periods' });
    expect(list.statusCode).toBe(200);
    const periods = list.json<{ current: number; periods: { state: string }[] }>();
    expect(periods.current).toBe(started.period);
    expect(periods.periods.map((p) => p.state).at(-2)).toBe('frozen');
    // What a frozen or future period cannot answer, each with its code.
    const certified = await app.inject({
      method: 'GET',
      url: `/v1/audit/checkpoint?period=${frozen.period}&nonce=abcd`,
    });
    expect(certified.statusCode).toBe(400);
    expect(certified.json()).toMatchObject({ error: { code: 'bad_request' } });
    const future = await app.inject({
      method: 'GET',
      url: `/v1/audit/checkpoint?period=${started.period + 1}`,
    });
    expect(future.statusCode).toBe(404);
    expect(future.json()).toMatchObject({ error: { code: 'audit_period_not_found' } });
    const bad = await app.inject({ method: 'GET', url: '/v1/audit/checkpoint?period=x' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: { code: 'bad_request' } });
    // The anchor ran on: the TPM holds the current period's checkpoint values.
    const anchored = await new TpmAuditAnchor(tpm, config).read();
    expect(cp.json<{ nvCounter: string }>().nvCounter).toBe(anchored.counter.toString());
  });
});

describe('the runtime timeline across log periods', () => {
  interface Line {
    period: number;
    seq: number;
    subject: string;
    kind: string;
  }
  interface Page {
    events: Line[];
    next: number | null;
    nextPeriod: number | null;
  }
  const of = (i: number, subject: string) => ({ ...event(i), subject });

  it('reads every period in order, each line naming its period; pages resume across a switch', async () => {
    const rt = 'rt_timeline';
    const first = audit.currentPeriod() ?? 0;
    await audit.append(of(200, rt));
    await audit.append(of(201, 'rt_someone_else'));
    await audit.append(of(202, rt));
    const switched = await audit.startPeriod('olga');
    await audit.append(of(203, rt));

    const all = await app.inject({ method: 'GET', url: `/v1/runtimes/${rt}/timeline` });
    expect(all.statusCode).toBe(200);
    const page = all.json<Page>();
    expect(page.events.map((e) => [e.period, e.kind])).toEqual([
      [first, 'grant'],
      [first, 'grant'],
      [switched.period, 'grant'],
    ]);
    expect(page.next).toBeNull();
    expect(page.nextPeriod).toBeNull();
    // Each line is provable in its period: its seq there is the entry.
    for (const e of page.events) {
      const inPeriod = await audit.inPeriod(e.period);
      const [entry] = await inPeriod.entries(e.seq, 1);
      expect(entry?.subject).toBe(rt);
    }

    // One line a page: the cursor is (nextPeriod, next) and crosses the switch.
    const walked: Line[] = [];
    let url = `/v1/runtimes/${rt}/timeline?limit=1`;
    for (let i = 0; i < 5; i++) {
      const p = (await app.inject({ method: 'GET', url })).json<Page>();
      walked.push(...p.events);
      if (p.next === null) break;
      expect(p.nextPeriod).not.toBeNull();
      url = `/v1/runtimes/${rt}/timeline?limit=1&period=${p.nextPeriod}&cursor=${p.next}`;
    }
    expect(walked).toEqual(page.events);

    // The link entry of a period, public (what a watcher follows a switch with).
    const link = await app.inject({
      method: 'GET',
      url: `/v1/audit/periods/${switched.period}/link`,
    });
    expect(link.statusCode).toBe(200);
    expect(link.json()).toMatchObject({
      period: switched.period,
      entry: { seq: 0, type: 'audit.period.started', facts: { period: switched.period } },
    });
    for (const n of [0, switched.period + 1]) {
      const none = await app.inject({ method: 'GET', url: `/v1/audit/periods/${n}/link` });
      expect(none.statusCode).toBe(404);
      expect(none.json()).toMatchObject({ error: { code: 'audit_period_not_found' } });
    }
    const beyond = await app.inject({
      method: 'GET',
      url: `/v1/runtimes/${rt}/timeline?period=${switched.period + 1}`,
    });
    expect(beyond.statusCode).toBe(404);
    expect(beyond.json()).toMatchObject({ error: { code: 'audit_period_not_found' } });
  });
});
