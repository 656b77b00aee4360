/**
 * Crash consistency of grant issuance (issue 6): the real appliance in a child process
 * (swtpm audit anchor, SoftHSM2, Cedar, LevelDB) serves POST /v1/grants to an enrolled,
 * attested runtime sending session-mode requests concurrently, and is killed with SIGKILL
 * at random moments (some during start-up, most under load), then started again on the
 * same store, TPM and token. After every kill the store is read here, independently: every
 * grant the client received a 201 for has its `grant.decision` allow entry (subject = the
 * grant id = `jti`, hash = `aud_hash`) at its `aud_seq`, its grant record, a log whose
 * links verify, and an anchor that matches it. After every start the appliance must serve
 * (/readyz 200: its own start-up check accepted the log and anchor, no
 * audit_rollback_detected), and the runtime attests again (sessions live in memory).
 * GRANTOR_GRANT_CRASH_CYCLES sets the number of kills (default 20), GRANTOR_CRASH_SEED the
 * seed of the kill moments.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import { TpmAuditAnchor, expectedAnchorNames } from '../../src/audit/index.js';
import { GENESIS_PREV_HASH, checkLink, isEntryShape } from '../../src/audit/entry.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import {
  attestOverHttp,
  call,
  enrollOverHttp,
  startCrashRig,
  type ApplianceChild,
  type CrashRig,
  type HttpRuntime,
} from './crash-rig.js';
import { grantBody, signed } from './rig.js';
import { mulberry32 } from '../rig/prng.js';

const CYCLES = Math.max(2, Number(process.env.GRANTOR_GRANT_CRASH_CYCLES ?? '20'));
const WORKERS = 8;
const EARLY_SHARE = 0.2;
const MAX_LOAD_MS = 800;

interface Acked {
  readonly grantId: string;
  readonly auditSeq: number;
  readonly audHash: string;
}

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms);
  });

let rig: CrashRig;
let running: ApplianceChild | undefined;
let ackedInRun: readonly Acked[] = [];

beforeAll(async () => {
  rig = await startCrashRig();
}, 120_000);

afterAll(async () => {
  await running?.kill();
  await rig.close();
});

/** The grant store's key of a grant record (src/grants/grant-store.level.ts). */
const recordKey = (id: string): string => `g!${encodeURIComponent(id).replace(/!/g, '%21')}`;

/**
 * Read the store of a dead child: log links, anchor, every acked grant; with
 * `everyAllowAccounted` also the other way round: every allow in the log has its grant
 * record or a `grant.issue_failed` mark (a start marks what an earlier kill left unreleased).
 */
async function checkStore(
  acked: readonly Acked[],
  label: string,
  everyAllowAccounted = false,
): Promise<number> {
  const db = await openDatabase(rig.dbPath);
  let entries: unknown[];
  let batches: { size: number; root: string }[];
  const missingRecords: string[] = [];
  const unaccounted: string[] = [];
  try {
    const audit = db.sublevel('audit', { valueEncoding: 'utf8' });
    entries = (await audit.values({ gte: 'e!', lt: 'e!~' }).all()).map(
      (v) => JSON.parse(v) as unknown,
    );
    batches = (await audit.values({ gte: 'b!', lt: 'b!~' }).all()).map(
      (v) => JSON.parse(v) as { size: number; root: string },
    );
    const grants = db.sublevel('grants', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    for (const a of acked) {
      if ((await grants.get(recordKey(a.grantId))) === undefined) missingRecords.push(a.grantId);
    }
    if (everyAllowAccounted) {
      const marked = new Set(
        entries
          .filter(isEntryShape)
          .flatMap((e) => (e.type === 'grant.issue_failed' ? [e.subject] : [])),
      );
      for (const e of entries.filter(isEntryShape)) {
        if (e.type !== 'grant.decision' || e.decision !== 'allow' || marked.has(e.subject))
          continue;
        if ((await grants.get(recordKey(e.subject))) === undefined) unaccounted.push(e.subject);
      }
    }
  } finally {
    await db.close();
  }
  expect(missingRecords, `${label}: grant records of acked grants`).toEqual([]);
  expect(unaccounted, `${label}: allows with neither a grant record nor a mark`).toEqual([]);
  let prev = GENESIS_PREV_HASH;
  entries.forEach((e, seq) => {
    if (!isEntryShape(e)) throw new Error(`${label}: entry ${seq} malformed`);
    expect(checkLink(e, seq, prev), `${label}: link of entry ${seq}`).toBeUndefined();
    prev = e.hash;
  });
  for (const a of acked) {
    const e = entries[a.auditSeq];
    expect(
      isEntryShape(e)
        ? { type: e.type, subject: e.subject, decision: e.decision, hash: e.hash }
        : undefined,
      `${label}: audit entry of acked grant ${a.grantId}`,
    ).toEqual({ type: 'grant.decision', subject: a.grantId, decision: 'allow', hash: a.audHash });
  }
  expect(batches.at(-1)?.size ?? 0, `${label}: last batch covers the log`).toBe(entries.length);
  const chain: Buffer[] = [Buffer.from(GENESIS_EXTEND)];
  for (const b of batches) {
    chain.push(extendDigest(chain.at(-1) ?? GENESIS_EXTEND, Buffer.from(b.root, 'hex')));
  }
  const tpm = await NativeTpm.open(rig.applianceTpm.tcti);
  try {
    const anchored = await new TpmAuditAnchor(tpm, {
      ...rig.anchor,
      pinnedNames: expectedAnchorNames(rig.anchor),
    }).read();
    // A child killed between storing a batch and extending the NV index leaves the TPM one
    // batch behind; the next start completes it (and /readyz proves it did).
    expect(
      chain.slice(-2).some((c) => c.equals(anchored.extendValue)),
      `${label}: the TPM anchor matches the stored batches`,
    ).toBe(true);
  } finally {
    await tpm.close();
  }
  return entries.length;
}

/** Start a child and wait until it serves; /readyz must be 200 (not a lockdown). */
async function startServing(label: string): Promise<{ child: ApplianceChild; base: string }> {
  const child = await rig.start();
  running = child;
  let port: number;
  try {
    port = await child.listening;
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}\n${child.stderr()}`);
  }
  const base = `http://127.0.0.1:${port}`;
  const ready = await call(base, 'GET', '/readyz');
  expect(ready.status, `${label}: /readyz ${ready.body}`).toBe(200);
  return { child, base };
}

function decodeClaims(jws: string): { jti: string; aud_seq: number; aud_hash: string } {
  return JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
    jti: string;
    aud_seq: number;
    aud_hash: string;
  };
}

/** WORKERS concurrent session-mode grant requests until the connection dies. */
async function load(
  base: string,
  rt: HttpRuntime,
  session: Awaited<ReturnType<typeof attestOverHttp>>,
  acked: Acked[],
  statuses: Map<number, number>,
): Promise<void> {
  const worker = async (): Promise<void> => {
    for (;;) {
      const body = signed(grantBody(rt), session.attestationId, session.key.privateKey);
      let status: number;
      let text: string;
      try {
        const res = await fetch(`${base}/v1/grants`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        status = res.status;
        text = await res.text();
      } catch {
        return; // the child is gone: whatever was in flight was never acknowledged
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 201) {
        const g = JSON.parse(text) as { grantId: string; grant: string; auditSeq: number };
        const claims = decodeClaims(g.grant);
        // The answer and the signed grant agree on what the log must hold.
        expect(claims.jti).toBe(g.grantId);
        expect(claims.aud_seq).toBe(g.auditSeq);
        acked.push({ grantId: g.grantId, auditSeq: g.auditSeq, audHash: claims.aud_hash });
      } else if (status === 429) {
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, () => worker()));
}

describe('grant issuance under SIGKILL (real appliance over HTTP)', () => {
  it(`survives ${CYCLES} kills: every 201 grant is in a log that verifies, and the appliance serves after every start`, async () => {
    const seed = Number(process.env.GRANTOR_CRASH_SEED ?? Date.now() % 1_000_000);
    const random = mulberry32(seed);
    const acked: Acked[] = [];
    const statuses = new Map<number, number>();
    let earlyKills = 0;
    let loadKills = 0;

    const first = await startServing(`seed ${seed}, first start`);
    const rt = await enrollOverHttp(first.base, rig.tools, 'crash-agent', { team: 'support' });
    await first.child.kill();
    running = undefined;

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const label = `seed ${seed}, cycle ${cycle}`;
      if (random() < EARLY_SHARE) {
        // During start-up and recovery (TPM, HSM, log check, key load).
        const child = await rig.start();
        running = child;
        await sleep(Math.floor(random() * 1500));
        await child.kill();
        earlyKills += 1;
      } else {
        const { child, base } = await startServing(label);
        const session = await attestOverHttp(base, rig.tools, rt);
        const work = load(base, rt, session, acked, statuses);
        await sleep(Math.floor(random() * MAX_LOAD_MS));
        await child.kill();
        await work;
        loadKills += 1;
      }
      running = undefined;
      await checkStore(acked, label);
    }

    // One more start: the last kill's store is accepted, then a clean stop and a last check.
    const last = await startServing(`seed ${seed}, final start`);
    // A few grants that are certainly acknowledged, then a clean stop (SIGTERM).
    const lastSession = await attestOverHttp(last.base, rig.tools, rt);
    for (let i = 0; i < 5; i++) {
      const res = await call(
        last.base,
        'POST',
        '/v1/grants',
        signed(grantBody(rt), lastSession.attestationId, lastSession.key.privateKey),
      );
      expect(res.status, `seed ${seed}: final grant ${res.body}`).toBe(201);
      const g = res.json() as { grantId: string; grant: string; auditSeq: number };
      acked.push({
        grantId: g.grantId,
        auditSeq: g.auditSeq,
        audHash: decodeClaims(g.grant).aud_hash,
      });
    }
    await last.child.stop();
    running = undefined;
    const size = await checkStore(acked, `seed ${seed}, final`, true);
    ackedInRun = acked;

    expect(earlyKills + loadKills, `seed ${seed}`).toBe(CYCLES);
    expect(loadKills, `seed ${seed}: kills under load`).toBeGreaterThan(0);
    expect(acked.length, `seed ${seed}: grants acknowledged`).toBeGreaterThan(0);
    expect(size).toBeGreaterThanOrEqual(acked.length);
    // No answer but 201 and 429 (rate limit) from a healthy appliance under this load.
    expect(
      [...statuses.keys()].filter((s) => s !== 201 && s !== 429),
      `seed ${seed}: statuses ${JSON.stringify([...statuses])}`,
    ).toEqual([]);
  }, 900_000);

  it('the store check is not vacuous: it refuses a 201 the log does not hold, and an unmarked lost allow', async () => {
    expect(ackedInRun.length).toBeGreaterThan(0);
    const real = ackedInRun[0] as Acked;
    await expect(
      checkStore([...ackedInRun, { ...real, grantId: 'gr_never_issued' }], 'planted'),
    ).rejects.toThrow(/gr_never_issued/);
    await expect(
      checkStore([{ ...real, audHash: '00'.repeat(32) }], 'planted hash'),
    ).rejects.toThrow(/audit entry of acked grant/);
    // An allow whose record is gone and that nobody marked is found.
    const db = await openDatabase(rig.dbPath);
    try {
      const grants = db.sublevel('grants', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
      await grants.del(recordKey(real.grantId));
    } finally {
      await db.close();
    }
    await expect(checkStore([], 'planted loss', true)).rejects.toThrow(
      /allows with neither a grant record nor a mark/,
    );
  });
});
