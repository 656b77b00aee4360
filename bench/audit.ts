/**
 * Audit appends per second and TPM NV writes per append at concurrency 1, 16 and 64, next
 * to the raw synced LevelDB batch rate (one entry-sized put per synced batch) measured in
 * the same run, on a real swtpm and a LevelDB folder under the system temp directory.
 *
 *   npx tsx bench/audit.ts [seconds-per-case]
 *
 * Target (issue 4): at concurrency 64, >= 60% of the raw synced batch rate with <= 1 NV
 * write per 16 appends (an anchor is two NV writes: extend and increment). Run it on an
 * idle machine: the numbers are only comparable within one run.
 *
 * As the appliance runs it: every anchor write in a TPM2_PolicySigned session signed by the
 * anchor write key in a SoftHSM2 token (docs/audit.md "Write policy"); the cost of one
 * anchor (extend + increment) is also timed against owner-written indices.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { marshalTpmtPublic } from '../src/tpm/marshal/public.js';
import { APPLIANCE_AK_TEMPLATE } from '../src/tpm/templates.js';
import { TpmAuditAnchor, provisionTpmAnchor } from '../src/audit/anchor.tpm.js';
import { createAudit } from '../src/audit/index.js';
import { openDatabase } from '../src/shared/db.level.js';
import { NativeTpm } from '../src/tpm/tpm.native.js';
import { Pkcs11AnchorKey } from '../src/audit/anchor-key.pkcs11.js';
import type { AnchorWriteKey } from '../src/audit/anchor-key.port.js';
import type { TpmPort } from '../src/tpm/tpm.port.js';
import { provisionSimHsm, provisionTpmTemplate, startSimTpm } from '../test/rig/sim.js';
import { rawSyncedBatchRate } from './audit-rig.js';

const seconds = Number(process.argv[2] ?? '3');
const ORIGIN = 'grantor.bench/audit';

/** Milliseconds per anchor (NV_Extend + NV_Increment), owner-written or policy-written. */
async function anchorWriteCost(
  tpm: TpmPort,
  base: number,
  writeKey?: AnchorWriteKey,
): Promise<number> {
  const indices = { counterIndex: base, extendIndex: base + 1 };
  const pin = await provisionTpmAnchor(tpm, indices, writeKey === undefined ? {} : { writeKey });
  const anchor = new TpmAuditAnchor(tpm, {
    ...indices,
    pinnedNames: pin.names,
    ...(writeKey === undefined ? {} : { writeKey }),
  });
  const rounds = 20;
  const t0 = performance.now();
  for (let k = 0; k < rounds; k++) {
    await anchor.extend(Buffer.alloc(32, k));
    await anchor.increment();
  }
  return (performance.now() - t0) / rounds;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'grantor-bench-audit-'));
  await provisionTpmTemplate(join(root, 'tpm-template'));
  const sim = await startSimTpm(join(root, 'tpm-template'));
  const tpm = await NativeTpm.open(sim.tcti);
  const hsm = await provisionSimHsm(join(root, 'hsm'), 'grantor-bench');
  process.env.SOFTHSM2_CONF = hsm.conf;
  const writeKey = new Pkcs11AnchorKey(
    { modulePath: hsm.module, tokenLabel: hsm.tokenLabel, pin: hsm.pin },
    { create: true },
  );
  try {
    const raw = await rawSyncedBatchRate(
      join(root, 'raw'),
      seconds,
      JSON.stringify({
        seq: 0,
        hash: 'f'.repeat(64),
        prevHash: '0'.repeat(64),
        pad: 'x'.repeat(200),
      }),
    );
    const writeCost = {
      owner: await anchorWriteCost(tpm, 0x01500110),
      policy: await anchorWriteCost(tpm, 0x01500112, writeKey),
    };
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signer = {
      keyName: ORIGIN,
      publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
      sign: (m: Uint8Array) => Promise.resolve(sign(null, m, privateKey)),
    };
    const rows: {
      concurrency: number;
      typed: boolean;
      rate: number;
      nvPerAppend: number;
      perBatch: number;
    }[] = [];
    let readCost: { plain: number; certified: number } | undefined;
    // The last case: version-2 grant decisions with typed facts, the request body kept by
    // its digest and the index terms, all in the same synced batch (issue 16).
    const cases: [number, boolean][] = [
      [1, false],
      [16, false],
      [64, false],
      [64, true],
    ];
    for (const [i, [concurrency, typed]] of cases.entries()) {
      const indices = { counterIndex: 0x01500100 + 2 * i, extendIndex: 0x01500101 + 2 * i };
      const pin = await provisionTpmAnchor(tpm, indices, { writeKey });
      const db = await openDatabase(join(root, `log-${concurrency}${typed ? '-typed' : ''}`));
      const plain = {
        ...indices,
        pinnedNames: pin.names,
        pinnedGenesis: pin.genesisCounter,
        akTemplate: marshalTpmtPublic(APPLIANCE_AK_TEMPLATE),
        writeKey,
        ...(pin.writeKey === undefined
          ? {}
          : { pinnedWritePolicy: Buffer.from(pin.writeKey.policy, 'hex') }),
      };
      // As the appliance runs it: every anchor read certified against the pinned AK.
      const pinnedAkPublic = await new TpmAuditAnchor(tpm, plain).akPublic();
      const anchor = new TpmAuditAnchor(tpm, {
        ...plain,
        ...(pinnedAkPublic === undefined ? {} : { pinnedAkPublic }),
      });
      if (i === 0) {
        const timeReads = async (a: TpmAuditAnchor): Promise<number> => {
          const t0 = performance.now();
          for (let k = 0; k < 10; k++) await a.read();
          return (performance.now() - t0) / 10;
        };
        readCost = {
          plain: await timeReads(new TpmAuditAnchor(tpm, plain)),
          certified: await timeReads(anchor),
        };
      }
      const audit = createAudit({ origin: ORIGIN, minAnchorIntervalMs: 0 }, { db, anchor, signer });
      await audit.provision();
      await audit.ready();
      let running = true;
      let n = 0;
      const before = audit.stats();
      const start = performance.now();
      const workers = Array.from({ length: concurrency }, async () => {
        while (running) {
          const k = n++;
          if (!typed) {
            await audit.append({
              type: 'bench.append',
              subject: `w_${k % concurrency}`,
              digest: createHash('sha256').update(String(k)).digest('hex'),
            });
            continue;
          }
          const body = JSON.stringify({
            action: 'tickets.read',
            audience: 'gw_tickets',
            issuedAt: new Date().toISOString(),
            parametersDigest: 'ab'.repeat(32),
            requestId: `req-${k}`,
            resource: `ticket:${k}`,
            runtimeId: `rt_bench${k % 50}`,
            session: { attestationId: 'at_bench' },
            ttlSeconds: 120,
          });
          const digest = createHash('sha256').update(body).digest('hex');
          await audit.append({
            type: 'grant.decision',
            subject: `gr_bench${k}`,
            decision: k % 5 === 0 ? 'deny' : 'allow',
            reasons: ['pol:' + 'cd'.repeat(32), 'allow-support-read'],
            digest,
            body,
            facts: {
              runtime: `rt_bench${k % 50}`,
              action: 'tickets.read',
              resource: `ticket:${k}`,
              audience: 'gw_tickets',
              parent: null,
              requestId: `req-${k}`,
              parametersDigest: 'ab'.repeat(32),
              proofMode: 'session',
              attestationId: 'at_bench',
              policyHash: 'cd'.repeat(32),
              matchedPolicies: ['allow-support-read'],
              keyId: 'grant-bench',
              expiresAt: '2026-12-02T12:00:00.000Z',
            },
          });
        }
      });
      await new Promise((r) => setTimeout(r, seconds * 1000));
      running = false;
      await Promise.all(workers);
      const elapsed = (performance.now() - start) / 1000;
      const after = audit.stats();
      const appends = after.appends - before.appends;
      rows.push({
        concurrency,
        typed,
        rate: appends / elapsed,
        nvPerAppend: (after.nvWrites - before.nvWrites) / appends,
        perBatch: appends / (after.batches - before.batches),
      });
      await audit.close();
      await db.close();
    }
    const fmt = (x: number, d = 0): string => x.toFixed(d).padStart(10);
    console.log(`raw synced LevelDB batches/s (1 put each): ${raw.toFixed(0)}`);
    console.log('concurrency  appends/s  % of raw  NV writes/append  appends/batch');
    for (const r of rows) {
      console.log(
        `${`${r.concurrency}${r.typed ? ' typed' : ''}`.padStart(11)} ${fmt(r.rate)} ${fmt((100 * r.rate) / raw, 1)} ${fmt(r.nvPerAppend, 4).padStart(17)} ${fmt(r.perBatch, 1).padStart(14)}`,
      );
    }
    console.log(
      `one anchor (NV_Extend + NV_Increment): owner-written ${writeCost.owner.toFixed(1)} ms, policy-written (per write: StartAuthSession, LoadExternal, PolicySigned, 2 FlushContext, one HSM ECDSA sign) ${writeCost.policy.toFixed(1)} ms`,
    );
    if (readCost !== undefined) {
      console.log(
        `anchor read at start-up/reconcile (not per batch): plain NV_Read ${readCost.plain.toFixed(1)} ms, certified (CreatePrimary + 2 NV_Certify, checked) ${readCost.certified.toFixed(1)} ms`,
      );
    }
    const c64 = rows.find((r) => r.concurrency === 64 && !r.typed);
    if (c64 !== undefined) {
      const ok = c64.rate >= 0.6 * raw && c64.nvPerAppend <= 1 / 16;
      console.log(
        `target at concurrency 64 (>= 60% of raw, <= 1 NV write per 16 appends): ${ok ? 'met' : 'NOT met'}`,
      );
    }
  } finally {
    await writeKey.close();
    await tpm.close();
    await sim.destroy();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
