/**
 * The process the crash harness kills: the audit service on its real adapters (LevelDB,
 * NV anchor in swtpm) under concurrent appends. Protocol on stdout, one line each:
 *   ready <size>          start-up check passed
 *   verified <n>          every previously acknowledged append (from ACKS_FILE) is in the log
 *   lost <seq>            an acknowledged append is missing or different (harness fails)
 *   ack <seq> <hash>      an append was acknowledged (durable and anchored)
 *   refused <reason>      the start-up check refused the store (harness fails)
 * Configuration in the environment: CRASH_DB, CRASH_TCTI, CRASH_ANCHOR (JSON of the
 * anchor config), CRASH_ACKS (file of `seq hash` lines), CRASH_CONCURRENCY.
 */
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { createAudit } from '../../src/audit/index.js';
import { openDatabase } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { testSigner } from './signer.js';

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  const anchorConfig = JSON.parse(env('CRASH_ANCHOR')) as {
    counterIndex: number;
    extendIndex: number;
    pinnedNames: { counter: string; extend: string };
    pinnedGenesis: string;
    pinnedAkPublic: string;
    akTemplate: string;
  };
  const db = await openDatabase(env('CRASH_DB'));
  const tpm = await NativeTpm.open(env('CRASH_TCTI'));
  const origin = 'grantor.test/crash';
  const audit = createAudit(
    { origin, maxBatchSize: 64 },
    {
      db,
      anchor: new TpmAuditAnchor(tpm, {
        ...anchorConfig,
        pinnedGenesis: BigInt(anchorConfig.pinnedGenesis),
        pinnedAkPublic: Buffer.from(anchorConfig.pinnedAkPublic, 'base64'),
        akTemplate: Buffer.from(anchorConfig.akTemplate, 'base64'),
      }),
      signer: testSigner(origin),
    },
  );
  try {
    // Provisioning's store step is idempotent; a killed first run is provisioned again.
    await audit.provision();
    await audit.ready();
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string } };
    say(`refused ${e.code ?? 'error'} ${e.details?.reason ?? String(err)}`);
    process.exit(2);
  }
  const head = await audit.checkpoint();
  say(`ready ${head.treeSize}`);

  const acked = (await readFile(env('CRASH_ACKS'), 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' '));
  if (acked.length > 0) {
    const entries = [];
    while (entries.length < head.treeSize) {
      entries.push(...(await audit.entries(entries.length, 1000)));
    }
    for (const [seq, hash] of acked) {
      if (entries[Number(seq)]?.hash !== hash) {
        say(`lost ${seq}`);
        process.exit(3);
      }
    }
  }
  say(`verified ${acked.length}`);

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
      say(`ack ${seq} ${hash}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
}

main().catch((err: unknown) => {
  say(`error ${String(err)}`);
  process.exit(1);
});
