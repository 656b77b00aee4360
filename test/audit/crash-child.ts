/**
 * The process the crash harness kills: the audit service on its real adapters (LevelDB,
 * NV anchor in swtpm) under concurrent appends. Protocol on stdout, one line each:
 *   boot                  the modules are loaded; the start-up check begins
 *   ready <size>          start-up check passed
 *   verified <n>          every previously acknowledged append (from ACKS_FILE) is in the log
 *   tiles <n>             the stored tiles and the time index equal those recomputed
 *                         from the n entries
 *   lost <seq>            an acknowledged append is missing or different (harness fails)
 *   ack <seq> <hash>      an append was acknowledged (durable and anchored)
 *   refused <reason>      the start-up check refused the store (harness fails)
 *   start <case>          what the start-up check found: `equal` (store and anchor agree),
 *                         `stored_not_anchored` (one stored batch never anchored: anchored
 *                         now), `extended_not_counted` (its extend done, increment now)
 * Configuration in the environment: CRASH_DB, CRASH_TCTI, CRASH_ANCHOR (JSON of the
 * anchor config), CRASH_ACKS (file of `seq hash` lines), CRASH_CONCURRENCY, and
 * CRASH_KILL_AT=`stored:<n>` or `extended:<n>`: the child SIGKILLs itself right after the
 * n-th batch of this run is durable in the store (before its extend), or right after its
 * extend (before its increment): the crash points the start-up check must complete, hit
 * without waiting for a random kill to land in a window of a few milliseconds. Extends are
 * counted from the start, so `extended:1` also lands in the start-up check's own recovery
 * when it anchors a stored batch (a crash during recovery).
 */
import { createHash } from 'node:crypto';
import { createAudit } from '../../src/audit/index.js';
import * as child from './crash-anchor.js';
import { testSigner } from './signer.js';
import { expectedTiles, storedTiles, tilesDisagree, timeIndexDisagrees } from './tiles-check.js';

async function main(): Promise<void> {
  child.say('boot');
  const { db, tpm } = await child.openCrashTarget();
  const origin = 'grantor.test/crash';
  const [killPoint, killAfter] = (process.env.CRASH_KILL_AT ?? '').split(':');
  const aimed = (point: string): (() => void) => {
    let batches = 0;
    return () => {
      batches += 1;
      if (killPoint === point && batches === Number(killAfter))
        process.kill(process.pid, 'SIGKILL');
    };
  };
  const afterStored = aimed('stored');
  const afterExtended = aimed('extended');
  const { logger, recovered } = child.recoveryLogger();
  // The real anchor and store, with the aimed kill right after the write it names.
  const { aimed: aimedAnchor } = child.crashAnchor(tpm, { afterExtend: afterExtended });
  const aimedStore = child.crashStore(afterStored);
  const audit = createAudit(
    { origin, maxBatchSize: 64, minAnchorIntervalMs: 0 },
    { db, anchor: aimedAnchor, signer: testSigner(origin), logger, decorateStore: aimedStore },
  );
  try {
    // Provisioning's store step is idempotent; a killed first run is provisioned again.
    await audit.provision();
    await audit.ready();
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string } };
    child.say(`refused ${e.code ?? 'error'} ${e.details?.reason ?? String(err)}`);
    process.exit(2);
  }
  const head = await audit.checkpoint();
  child.say(`start ${recovered()}`);
  child.say(`ready ${head.treeSize}`);

  const acked = await child.readAcks();
  if (acked.length > 0) {
    const entries = [];
    while (entries.length < head.treeSize) {
      entries.push(...(await audit.entries(entries.length, 1000)));
    }
    for (const [seq, hash] of acked) {
      if (entries[Number(seq)]?.hash !== hash) {
        child.say(`lost ${seq}`);
        process.exit(3);
      }
    }
  }
  child.say(`verified ${acked.length}`);
  // After every recovery the tiles and the time index agree with the entries (recomputed
  // independently).
  const hashes: string[] = [];
  while (hashes.length < head.treeSize) {
    hashes.push(...(await audit.entries(hashes.length, 1000)).map((e) => e.hash));
  }
  const disagree =
    tilesDisagree(await storedTiles(db), expectedTiles(hashes)) ?? (await timeIndexDisagrees(db));
  if (disagree !== undefined) {
    child.say(`error tiles: ${disagree}`);
    process.exit(4);
  }
  child.say(`tiles ${hashes.length}`);

  const concurrency = Number(process.env.CRASH_CONCURRENCY ?? '16');
  let n = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = n++;
      const { seq, hash } = await audit.append({
        type: 'crash.test',
        subject: `w_${i % concurrency}`,
        digest: createHash('sha256').update(`${process.pid}:${i}`).digest('hex'),
      });
      child.say(`ack ${seq} ${hash}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
}

main().catch((err: unknown) => {
  child.say(`error ${String(err)}`);
  process.exit(1);
});
