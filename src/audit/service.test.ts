import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryAnchor } from './anchor.memory.js';
import type { NvCertification } from './anchor.port.js';
import { parseCheckpoint, parseVerifierKey, verifyNote } from './checkpoint.js';
import type { AuditEvent } from './entry.js';
import { createAudit } from './index.js';
import { TempDatabases, testSigner } from './testing.js';

const event = (i: number): AuditEvent => ({
  type: 'runtime.enrolled',
  subject: `rt_${i}`,
  digest: createHash('sha256').update(String(i)).digest('hex'),
});

/** Records what the anchor held at each NV_Certify. */
class RecordingAnchor extends MemoryAnchor {
  readonly certified: { counter: bigint; extend: Buffer }[] = [];
  override certify(q: Buffer): Promise<NvCertification[]> {
    this.certified.push({ counter: this.counter, extend: Buffer.from(this.extendValue) });
    return super.certify(q);
  }
}

const databases = new TempDatabases('grantor-audit-svc-');
afterEach(() => databases.cleanup());

async function service(origin = 'grantor.test/svc') {
  const db = await databases.open();
  const anchor = new RecordingAnchor();
  const signer = testSigner(origin);
  const audit = createAudit({ origin, minAnchorIntervalMs: 0 }, { db, anchor, signer });
  await audit.provision();
  await audit.ready();
  return { audit, anchor, signer };
}

describe('AuditService', () => {
  it('signs checkpoints that verify with the published verifier key', async () => {
    const { audit } = await service();
    await Promise.all([0, 1, 2].map((i) => audit.append(event(i))));
    const cp = await audit.checkpoint();
    const v = await audit.verifier();
    expect(v.noteVerifierKey.startsWith('grantor.test/svc+')).toBe(true);
    expect(Buffer.from(v.jwk.x, 'base64url')).toHaveLength(32);
    const body = parseCheckpoint(verifyNote(cp.note, parseVerifierKey(v.noteVerifierKey)));
    expect(body.size).toBe(3);
    expect(body.root.toString('base64')).toBe(cp.rootHash);
    expect(body.counter.toString()).toBe(cp.nvCounter);
  });

  it('certifies with a nonce at exactly the checkpoint state, even under concurrent appends', async () => {
    const { audit, anchor } = await service();
    const appends = Array.from({ length: 50 }, (_, i) => audit.append(event(i)));
    const nonce = Buffer.alloc(32, 0xab);
    const [cp] = await Promise.all([audit.checkpoint({ nonce }), ...appends]);
    expect(cp.nonce).toBe(nonce.toString('hex'));
    expect(cp.nvCertify?.map((c) => c.index)).toEqual(['counter', 'extend']);
    const at = anchor.certified[0]!;
    expect(at.counter.toString()).toBe(cp.nvCounter);
    expect(at.extend.toString('base64')).toBe(cp.nvExtend);
  });

  it('refuses a nonce longer than 32 bytes with bad_request', async () => {
    const { audit } = await service();
    await expect(audit.checkpoint({ nonce: Buffer.alloc(33) })).rejects.toMatchObject({
      code: 'bad_request',
    });
    await expect(audit.checkpoint({ nonce: Buffer.alloc(0) })).rejects.toMatchObject({
      code: 'bad_request',
    });
  });

  it('serves proofs bounded by the checkpoint and pages of entries', async () => {
    const { audit } = await service();
    for (let i = 0; i < 5; i++) await audit.append(event(i));
    const incl = await audit.inclusionProof(2, 5);
    expect(incl).toMatchObject({ seq: 2, treeSize: 5 });
    expect(incl.path.every((h) => /^[0-9a-f]{64}$/.test(h))).toBe(true);
    expect((await audit.consistencyProof(2, 5)).path.length).toBeGreaterThan(0);
    await expect(audit.inclusionProof(2, 6)).rejects.toMatchObject({ code: 'bad_request' });
    expect((await audit.entries(1, 2)).map((e) => e.seq)).toEqual([1, 2]);
  });

  it('exports the entries up to a fresh checkpoint', async () => {
    const { audit } = await service();
    for (let i = 0; i < 4; i++) await audit.append(event(i));
    const exp = await audit.exportLog();
    expect(exp.entries).toHaveLength(4);
    expect(exp.checkpoint.treeSize).toBe(4);
    expect(exp.format).toBe('grantor-audit-export/1');
  });

  it('rejects an origin that cannot be a note key name', async () => {
    const db = await databases.open();
    expect(() =>
      createAudit(
        { origin: 'has space', minAnchorIntervalMs: 0 },
        { db, anchor: new MemoryAnchor(), signer: testSigner('x') },
      ),
    ).toThrow(expect.objectContaining({ code: 'config_invalid' }) as Error);
  });
});
