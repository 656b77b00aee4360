/**
 * Two swtpm instances: the appliance's (anchoring the real audit log: LevelDB store, NV
 * counter and extend index) and the runtime's (driven by the attester through our addon).
 * enroll -> activate -> challenge -> attest -> trusted, each step recorded and anchored in
 * the appliance's TPM before its answer.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Attester } from '../../attester/attester.js';
import type { AuditSink } from '../../src/attestation/index.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { createAudit } from '../../src/audit/index.js';
import type { AuditService } from '../../src/audit/service.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { provisionAnchor, tempDir } from '../audit/helpers.js';
import { testSigner } from '../audit/signer.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { listenHarness, startHarness, type Harness } from './harness.js';

const ORIGIN = 'grantor.test/attestation';
let applianceSim: SimTpm;
let applianceTpm: NativeTpm;
let work: string;
let auditDb: Database;
let audit: AuditService;
let h: Harness;
let url: string;

beforeAll(async () => {
  applianceSim = await startSimTpm();
  applianceTpm = await NativeTpm.open(applianceSim.tcti);
  const anchor = await provisionAnchor(applianceTpm);
  work = await tempDir('grantor-att-audit-');
  auditDb = await openDatabase(join(work, 'db'));
  audit = createAudit(
    { origin: ORIGIN, minAnchorIntervalMs: 0 },
    { db: auditDb, anchor: new TpmAuditAnchor(applianceTpm, anchor), signer: testSigner(ORIGIN) },
  );
  await audit.provision();
  await audit.ready();
  const sink: AuditSink = {
    record: async (event) => {
      await audit.append(event);
    },
  };
  h = await startHarness({ audit: sink });
  url = await listenHarness(h);
}, 120_000);

afterAll(async () => {
  await h.close();
  await audit.close();
  await auditDb.close();
  await applianceTpm.close();
  await applianceSim.destroy();
  await rm(work, { recursive: true, force: true });
});

describe('attestation with the appliance TPM anchoring the audit log', () => {
  it('enroll -> activate -> challenge -> attest -> trusted, every step anchored before the answer', async () => {
    const runtimeTpm = await NativeTpm.open(h.tpm.tcti);
    try {
      const attester = new Attester(runtimeTpm, { url });
      expect(await attester.enroll('two-tpm-runtime')).toBe('active');
      const result = await attester.attest();
      expect(result.verdict).toBe('trusted');
      const runtimeId = attester.state.runtimeId;
      const entries = await audit.entries(0, 10);
      expect(entries.map((e) => [e.type, e.subject, e.decision])).toEqual([
        ['runtime.enroll', runtimeId, 'pending_activation'],
        ['runtime.activate', runtimeId, 'active'],
        ['runtime.attest', runtimeId, 'trusted'],
      ]);
      const checkpoint = await audit.checkpoint();
      expect(checkpoint.treeSize).toBe(3);
    } finally {
      await runtimeTpm.close();
    }
  });
});
