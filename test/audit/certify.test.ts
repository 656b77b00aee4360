/**
 * Certified checkpoints (`GET /v1/audit/checkpoint?nonce=`) certify exactly what the note
 * states, on swtpm: asked while appends keep batches in flight, and asked right after a
 * batch failed half-way (the TPM holds its extend, the log has not settled it). Each one is
 * checked the way `grantor audit verify` checks it: NV_Certify of the pinned names, signed by
 * the pinned AK, qualified with the nonce, with contents equal to the note's anchor lines.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnchorState, AuditAnchor, NvCertification } from '../../src/audit/anchor.port.js';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { TpmAuditAnchor } from '../../src/audit/anchor.tpm.js';
import { parseCheckpoint } from '../../src/audit/checkpoint.js';
import { createAudit } from '../../src/audit/index.js';
import { checkNvCertification } from '../../src/audit/nv-certify.js';
import type { AuditService, SignedCheckpoint } from '../../src/audit/service.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import type { NativeTpm } from '../../src/tpm/tpm.native.js';
import { type SimTpm } from '../rig/sim.js';
import { event, provisionAnchor, startTpmFile, tearDownTpm } from './helpers.js';
import { testSigner } from './signer.js';
import { AnchorError } from '../../src/audit/errors.js';

const ORIGIN = 'grantor.test/certify';
let sim: SimTpm;
let tpm: NativeTpm;
let work: string;
let nextIndex = 0x01500030;

beforeAll(async () => {
  ({ sim, tpm, work } = await startTpmFile('grantor-audit-certify-'));
});

afterAll(() => tearDownTpm(() => tpm.close(), [sim], work));

/** The real anchor, whose next increment can be made to fail before it reaches the TPM. */
class FailingIncrement implements AuditAnchor {
  failNext = false;
  readonly #inner: TpmAuditAnchor;

  constructor(inner: TpmAuditAnchor) {
    this.#inner = inner;
  }
  get genesis(): bigint | undefined {
    return this.#inner.genesis;
  }
  get pinnedNames(): AuditAnchor['pinnedNames'] {
    return this.#inner.pinnedNames;
  }
  checkPinned(): Promise<void> {
    return this.#inner.checkPinned();
  }
  read(): Promise<AnchorState> {
    return this.#inner.read();
  }
  readAfterWrite(): Promise<AnchorState> {
    return this.#inner.readAfterWrite();
  }
  extend(data: Buffer): Promise<void> {
    return this.#inner.extend(data);
  }
  increment(): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      // As a connection lost before the command: not retryable, the log must reconcile.
      return Promise.reject(new AnchorError('TPM connection lost', false));
    }
    return this.#inner.increment();
  }
  certify(qualifyingData: Buffer): Promise<NvCertification[]> {
    return this.#inner.certify(qualifyingData);
  }
  akPublic(): Promise<Buffer | undefined> {
    return this.#inner.akPublic();
  }
}

async function openAudit(dir: string): Promise<{
  audit: AuditService;
  anchor: FailingIncrement;
  db: Database;
  config: TpmAnchorConfig;
}> {
  // A fresh anchor (two new NV indices) per log.
  const config = await provisionAnchor(tpm, {
    counterIndex: nextIndex,
    extendIndex: nextIndex + 1,
  });
  nextIndex += 2;
  const db = await openDatabase(join(work, dir));
  const anchor = new FailingIncrement(new TpmAuditAnchor(tpm, config));
  const audit = createAudit(
    { origin: ORIGIN, maxBatchSize: 8, minAnchorIntervalMs: 0 },
    { db, anchor, signer: testSigner(ORIGIN) },
  );
  await audit.provision();
  await audit.ready();
  return { audit, anchor, db, config };
}

/** What `grantor audit verify` checks of the TPM evidence; throws on the first mismatch. */
function checkCertified(config: TpmAnchorConfig, cp: SignedCheckpoint, nonce: Buffer): void {
  const body = parseCheckpoint(`${cp.note.split('\n\n')[0] ?? ''}\n`);
  const certs = cp.nvCertify ?? [];
  expect(certs.map((c) => c.index).sort()).toEqual(['counter', 'extend']);
  for (const c of certs) {
    const contents = checkNvCertification(
      Buffer.from(c.attest, 'base64'),
      Buffer.from(c.signature, 'base64'),
      {
        akPublic: Buffer.from(config.pinnedAkPublic ?? []),
        nonce,
        name: c.index === 'counter' ? config.pinnedNames.counter : config.pinnedNames.extend,
        size: c.index === 'counter' ? 8 : 32,
      },
    );
    if (c.index === 'counter') {
      expect(contents.readBigUInt64BE(0), `counter at size ${body.size}`).toBe(body.counter);
    } else {
      expect(contents.toString('hex'), `extend at size ${body.size}`).toBe(
        body.extendValue.toString('hex'),
      );
    }
  }
}

describe('certified checkpoints state what the TPM certifies', () => {
  it('while appends keep batches in flight, every certified checkpoint verifies', async () => {
    const { audit, db, config } = await openAudit('busy');
    try {
      let stop = false;
      let appended = 0;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          await audit.append(event(w * 10_000 + i));
          appended += 1;
        }
      });
      const sizes: number[] = [];
      for (let i = 0; i < 12; i++) {
        const nonce = randomBytes(32);
        const cp = await audit.checkpoint({ nonce });
        checkCertified(config, cp, nonce);
        sizes.push(cp.treeSize);
      }
      stop = true;
      await Promise.all(writers);
      expect(appended).toBeGreaterThan(0);
      // The checkpoints were taken while the log grew, not all on one idle head.
      expect(new Set(sizes).size).toBeGreaterThan(1);
    } finally {
      await audit.close();
      await db.close();
    }
  });

  it('after a batch failed between extend and increment, the certified checkpoint settles it first', async () => {
    const { audit, anchor, db, config } = await openAudit('half');
    try {
      await audit.append(event(0));
      anchor.failNext = true;
      await expect(audit.append(event(1))).rejects.toMatchObject({ code: 'audit_unavailable' });
      // The TPM now holds the failed batch's extend, the log's head does not.
      const nonce = randomBytes(32);
      const cp = await audit.checkpoint({ nonce });
      checkCertified(config, cp, nonce);
      // Settled: the stored, extended batch was completed and is what the note states.
      expect(cp.treeSize).toBe(2);
      const after = await audit.append(event(2));
      expect(after.seq).toBe(2);
    } finally {
      await audit.close();
      await db.close();
    }
  });
});
