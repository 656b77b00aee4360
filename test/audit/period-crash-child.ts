/**
 * The process the period crash test kills (crash-harness.ts, period-crash.test.ts): the
 * audit service on its real adapters (LevelDB, NV anchor in swtpm) under concurrent appends,
 * starting a new log period in the middle of them in every run. Protocol on stdout as
 * crash-child.ts's, with acks keyed `period * 1e9 + seq`, and:
 *   period <n>            the current period after the start-up check
 *   checked <n>           after this recovery: exactly one period is current (the registry,
 *                         read raw), every period after the first opens with its link entry
 *                         naming the previous period's final checkpoint and anchor state,
 *                         the anchor chain recomputed over every period's batch records ends
 *                         at the TPM's certified values, and every period's tiles equal
 *                         those recomputed from its entries
 *   switched <n>          a new period started under load
 * CRASH_KILL_AT: `switch:stored` (right after the switch's one synced write), `switch:extended`
 * (right after the extend that anchors the link batch), `switch:counted` (right after its
 * increment, before the new period serves), or crash-child's `stored:<n>`/`extended:<n>`.
 */
import { createHash } from 'node:crypto';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { createAudit, type AuditService } from '../../src/audit/index.js';
import type { PeriodStore } from '../../src/audit/period-store.port.js';
import { periodStoreName } from '../../src/audit/periods.js';
import type { Database } from '../../src/shared/db.level.js';
import {
  crashAnchor,
  crashStore,
  openCrashTarget,
  readAcks,
  recoveryLogger,
  say,
} from './crash-anchor.js';
import { testSigner } from './signer.js';
import { expectedTiles, storedTiles, tilesDisagree } from './tiles-check.js';

const KEY = 1e9;

function fail(line: string, code: number): never {
  say(line);
  process.exit(code);
}

async function allEntries(service: { entries: AuditService['entries'] }, size: number) {
  const out: AuditEntry[] = [];
  while (out.length < size) out.push(...(await service.entries(out.length, 1000)));
  return out;
}

/** Independently of the service: the registry holds exactly one current period. */
async function registryCurrent(db: Database): Promise<number> {
  const sub = db.sublevel('audit-periods', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  const current = await sub.get('current');
  const n = current === undefined ? 0 : (JSON.parse(current) as { period: number }).period;
  const records = await sub.keys({ gte: 'p!', lt: 'p!~' }).all();
  const expected = Array.from({ length: n }, (_, i) => `p!${(i + 1).toString().padStart(16, '0')}`);
  if (JSON.stringify(records) !== JSON.stringify(expected)) {
    fail(`error registry: current ${n}, records ${records.length}`, 5);
  }
  return n;
}

async function main(): Promise<void> {
  say('boot');
  const { db, tpm } = await openCrashTarget();
  const origin = 'grantor.test/period-crash';
  const killAt = process.env.CRASH_KILL_AT ?? '';
  const die = (): never => process.kill(process.pid, 'SIGKILL') as never;
  let switchWritten = false;
  const counted = { stored: 0, extended: 0 };
  const { logger, recovered } = recoveryLogger();
  const { anchor, aimed: aimedAnchor } = crashAnchor(tpm, {
    afterExtend: () => {
      counted.extended += 1;
      if (switchWritten && killAt === 'switch:extended') die();
      if (killAt === `extended:${counted.extended}`) die();
    },
    afterIncrement: () => {
      if (switchWritten && killAt === 'switch:counted') die();
    },
  });
  const aimedStore = crashStore(() => {
    counted.stored += 1;
    if (killAt === `stored:${counted.stored}`) die();
  });
  const aimedPeriods = (periods: PeriodStore): PeriodStore => ({
    readCurrent: () => periods.readCurrent(),
    readRecord: (n) => periods.readRecord(n),
    readRetirement: (n) => periods.readRetirement(n),
    writeRetirement: (n, r) => periods.writeRetirement(n, r),
    store: (n) => periods.store(n),
    startPeriod: async (...args) => {
      await periods.startPeriod(...args);
      switchWritten = true;
      if (killAt === 'switch:stored') die();
    },
  });
  const audit = createAudit(
    { origin, maxBatchSize: 64, minAnchorIntervalMs: 0 },
    {
      db,
      anchor: aimedAnchor,
      signer: testSigner(origin),
      logger,
      decorateStore: aimedStore,
      decoratePeriods: aimedPeriods,
    },
  );
  try {
    await audit.provision();
    await audit.ready();
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string } };
    fail(`refused ${e.code ?? 'error'} ${e.details?.reason ?? String(err)}`, 2);
  }
  const current = audit.currentPeriod() ?? -1;
  say(`start ${recovered()}`);
  say(`period ${current}`);
  say(`ready ${(await audit.checkpoint()).treeSize}`);

  // Every period's entries, read through the service (frozen ones read-only).
  const byPeriod: AuditEntry[][] = [];
  for (let n = 0; n <= current; n++) {
    const service = await audit.inPeriod(n);
    byPeriod.push(await allEntries(service, (await service.checkpoint()).treeSize));
  }
  const acked = await readAcks();
  for (const [key, hash] of acked) {
    const k = Number(key);
    if (byPeriod[Math.floor(k / KEY)]?.[k % KEY]?.hash !== hash) fail(`lost ${key}`, 3);
  }
  say(`verified ${acked.length}`);

  // Exactly one current period; each later period linked to the one before; the anchor.
  if ((await registryCurrent(db)) !== current) fail('error registry: current differs', 5);
  let extend: Buffer = Buffer.from(GENESIS_EXTEND);
  let counter = anchor.genesis ?? 0n;
  for (let n = 0; n <= current; n++) {
    const entries = byPeriod[n] ?? [];
    if (n > 0) {
      const f = entries[0]?.facts as Record<string, unknown> | undefined;
      const before = await (await audit.inPeriod(n - 1)).checkpoint();
      if (
        entries[0]?.type !== 'audit.period.started' ||
        f?.previousSize !== before.treeSize ||
        f.previousRoot !== Buffer.from(before.rootHash, 'base64').toString('hex') ||
        f.previousCounter !== counter.toString() ||
        f.previousExtend !== extend.toString('hex')
      ) {
        fail(`error link of period ${n}`, 6);
      }
    }
    const sub = db.sublevel(periodStoreName(n), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    for (const v of await sub.values({ gte: 'b!', lt: 'b!~' }).all()) {
      extend = extendDigest(extend, Buffer.from((JSON.parse(v) as { root: string }).root, 'hex'));
      counter += 1n;
    }
    const disagree = tilesDisagree(
      await storedTiles(db, periodStoreName(n)),
      expectedTiles(entries.map((e) => e.hash)),
    );
    if (disagree !== undefined) fail(`error tiles of period ${n}: ${disagree}`, 4);
  }
  const tpmState = await anchor.read();
  if (tpmState.counter !== counter || !tpmState.extendValue.equals(extend)) {
    fail('error anchor: the chain over every period does not end at the TPM', 7);
  }
  say(`checked ${current}`);

  const concurrency = Number(process.env.CRASH_CONCURRENCY ?? '4');
  const switchAfter = 4 + Math.floor(Math.random() * 12);
  let n = 0;
  let acks = 0;
  const switching = (async () => {
    while (acks < switchAfter) await new Promise((r) => setImmediate(r));
    const info = await audit.startPeriod('crash-test');
    say(`switched ${info.period}`);
  })();
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = n++;
      const {
        seq,
        hash,
        period = -1,
      } = await audit.append({
        type: 'crash.test',
        subject: `w_${i % concurrency}`,
        digest: createHash('sha256').update(`${process.pid}:${i}`).digest('hex'),
      });
      acks += 1;
      say(`ack ${period * KEY + seq} ${hash}`);
    }
  };
  await Promise.all([switching, ...Array.from({ length: concurrency }, () => worker())]);
}

main().catch((err: unknown) => {
  say(`error ${String(err)}`);
  process.exit(1);
});
