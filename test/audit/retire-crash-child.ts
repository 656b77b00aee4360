/**
 * The process the retire crash test kills (retire-crash.test.ts): the audit service on its
 * real adapters (LevelDB, NV anchor in swtpm) retiring frozen period 0. Protocol on stdout
 * as crash-child.ts's.
 *
 * RETIRE_MODE=prepare  provisions and writes period 0 (7 decisions), period 1 (its link and
 *                      3 more) and starts period 2: `prepared`
 * RETIRE_MODE=retire   opens the log (the start-up check must accept the store: else
 *                      `refused <code>`, exit 2), retires period 0, and SIGKILLs itself at
 *                      RETIRE_KILL_AT if set: `acted` (right after the synced batch holding
 *                      the audit.period.retired entry), `recorded` (right after the
 *                      retirement record is written, state `deleting`), `chunk` (right after
 *                      the first chunk of deletions). Without a kill it checks what a retire
 *                      must leave, whatever runs were killed before it: exactly one act entry
 *                      for period 0, its record `done` naming a bundle file whose SHA-256 is
 *                      the act's digest, no entry of period 0 left in the store, and
 *                      `grantor audit verify --full` passing: `checked <file>`, or
 *                      `error <what>` and exit 3.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditStore } from '../../src/audit/audit-store.port.js';
import { runAuditCli } from '../../src/audit/cli.js';
import { createAudit } from '../../src/audit/index.js';
import { LevelPeriodStore } from '../../src/audit/period-store.level.js';
import type { PeriodStore } from '../../src/audit/period-store.port.js';
import { periodStoreName } from '../../src/audit/periods.js';
import { overlay } from '../../src/shared/overlay.js';
import { crashAnchor, env, openCrashTarget, say } from './crash-anchor.js';
import { storeWith } from './helpers.js';
import { retainArchive, retainDecision } from '../../src/audit/testing.js';
import { testSigner } from './signer.js';

const ORIGIN = 'grantor.test/retire-crash';
const sha = (t: string): string => createHash('sha256').update(t).digest('hex');

function fail(line: string, code: number): never {
  say(line);
  process.exit(code);
}

async function main(): Promise<void> {
  say('boot');
  const { db, tpm } = await openCrashTarget();
  const mode = env('RETIRE_MODE');
  const killAt = process.env.RETIRE_KILL_AT ?? '';
  const die = (): never => process.kill(process.pid, 'SIGKILL') as never;
  const { aimed } = crashAnchor(tpm, {});
  let acted = false;
  const aimedStore = (store: AuditStore): AuditStore =>
    storeWith(store, {
      appendBatch: async (write) => {
        await store.appendBatch(write);
        const isAct = write.entries.some(
          (e) => (e as { type?: unknown }).type === 'audit.period.retired',
        );
        if (isAct) acted = true;
        if (isAct && killAt === 'acted') die();
      },
    });
  const aimedPeriods = (periods: PeriodStore): PeriodStore =>
    overlay(periods, {
      writeRetirement: async (n: number, record: object) => {
        await periods.writeRetirement(n, record);
        const state = (record as { state?: unknown }).state;
        if (acted && state === 'deleting' && killAt === 'recorded') die();
      },
    });
  const audit = createAudit(
    { origin: ORIGIN, maxBatchSize: 3, minAnchorIntervalMs: 0 },
    {
      db,
      anchor: aimed,
      signer: testSigner(ORIGIN),
      decorateStore: aimedStore,
      decoratePeriods: aimedPeriods,
      retention: {
        dir: env('RETIRE_DIR'),
        chunk: 2,
        afterChunk: () => {
          if (killAt === 'chunk') die();
        },
      },
    },
  );
  try {
    if (mode === 'prepare') await audit.provision();
    await audit.ready();
  } catch (err) {
    fail(`refused ${(err as { code?: string }).code ?? String(err)}`, 2);
  }
  if (mode === 'prepare') {
    for (let i = 0; i < 7; i++) await audit.append(retainDecision(i));
    await audit.startPeriod('olivia');
    for (let i = 7; i < 10; i++) await audit.append(retainDecision(i));
    await audit.startPeriod('olivia');
    say('prepared');
    await audit.close();
    process.exit(0);
  }

  const record = await audit.retirePeriod(0, 'olivia', retainArchive).catch((err: unknown) => {
    fail(`error retire ${(err as { code?: string }).code ?? String(err)}`, 3);
  });
  const acts = await audit.query({ type: 'audit.period.retired' }, 0, 10);
  if (acts.entries.length !== 1) fail(`error acts ${acts.entries.length}`, 3);
  const facts = acts.entries[0]?.facts as { bundleDigest?: string } | undefined;
  if (record.state !== 'done') fail(`error state ${record.state}`, 3);
  if (facts?.bundleDigest !== record.bundleDigest) fail('error act digest', 3);
  const text = await readFile(join(env('RETIRE_DIR'), record.file), 'utf8');
  if (sha(text) !== record.bundleDigest) fail('error bundle digest', 3);
  const sub = db.sublevel(periodStoreName(0), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  const left = await sub.keys({ gte: 'e!', lt: 'e!~' }).all();
  if (left.length !== 0) fail(`error entries ${left.length}`, 3);
  await audit.close();
  const lines: string[] = [];
  const code = await runAuditCli(
    ['verify', '--full'],
    { openPeriods: () => Promise.resolve(new LevelPeriodStore(db)) },
    { out: (l) => lines.push(l), err: (l) => lines.push(l) },
  );
  if (code !== 0) fail(`error verify ${lines.join(' | ')}`, 3);
  say(`checked ${record.file}`);
  process.exit(0);
}

main().catch((err: unknown) => {
  say(`error ${err instanceof Error ? err.message : String(err)}`);
  process.exit(4);
});
