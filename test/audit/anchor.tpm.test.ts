/**
 * The audit log on its real adapters: LevelDB store and the NV anchor in a real swtpm.
 * Provisioning and pinned names, anchoring, NV_Certify, the start-up check's rollback
 * cases (restored copy, other appliance, rewritten entry, truncated tail, redefined NV
 * index), and a cross-check of the anchor with tpm2-tools.
 */
import { execFile } from 'node:child_process';
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { GENESIS_EXTEND, extendDigest } from '../../src/audit/anchor.port.js';
import {
  ANCHOR_NV_ATTRIBUTES,
  TpmAuditAnchor,
  expectedAnchorNames,
} from '../../src/audit/anchor.tpm.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { entryHash } from '../../src/audit/entry.js';
import { LevelAuditStore } from '../../src/audit/audit-store.level.js';
import { replayLog } from '../../src/audit/replay.js';
import { unmarshalTpmsAttest } from '../../src/tpm/marshal/attest.js';
import { TPM_GENERATED_VALUE, TPM_ST } from '../../src/tpm/marshal/constants.js';
import { unmarshalTpm2bPublic } from '../../src/tpm/marshal/public.js';
import { unmarshalTpmtSignature } from '../../src/tpm/marshal/signature.js';
import { verifyTpmtSignature } from '../../src/tpm/marshal/verify.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { marshalTpmtPublic } from '../../src/tpm/marshal/public.js';
import { AK_TEMPLATE_ECC_P256 } from '../../src/tpm/templates.js';
import { startSimTpm } from '../rig/sim.js';
import { INDICES, captureLogger, event, logAt, provisionAnchor, useTpmFile } from './helpers.js';

const run = promisify(execFile);

const file = useTpmFile('grantor-audit-anchor-');

const rollback = (reason: string): object => ({
  code: 'audit_rollback_detected',
  details: { reason },
});

describe('TPM anchor', () => {
  it('provisions written indices whose names follow from the documented attributes', async () => {
    expect(file.config.pinnedNames).toEqual(expectedAnchorNames(INDICES));
    const anchor = new TpmAuditAnchor(file.tpm, file.config);
    await anchor.checkPinned();
    const state = await anchor.read();
    expect(state.extendValue.equals(GENESIS_EXTEND)).toBe(true);
    expect(state.counter).toBeGreaterThan(0n);
  });

  it('anchors every batch: extend value and counter follow the store', async () => {
    const opened = await logAt(join(file.work, 'main'), file.tpm, file.config);
    await opened.log.provision();
    await opened.log.open();
    const genesis = (await new TpmAuditAnchor(file.tpm, file.config).read()).counter;
    await opened.log.append(event(0));
    await Promise.all(Array.from({ length: 30 }, (_, i) => opened.log.append(event(1 + i))));
    const head = opened.log.head();
    expect(head.size).toBe(31);
    const state = await new TpmAuditAnchor(file.tpm, file.config).read();
    expect(state.counter).toBe(genesis + BigInt(head.batches));
    expect(state.extendValue.equals(head.extendValue)).toBe(true);
    // Recompute the extend chain from the batch roots alone.
    let e: Buffer = Buffer.from(GENESIS_EXTEND);
    for (const size of batchSizes(opened.log.stats().batches, head.size)) {
      e = extendDigest(e, await opened.log.root(size));
    }
    expect(e.equals(state.extendValue)).toBe(true);
    await opened.close();
  });

  it('restarts on the consistent store and continues', async () => {
    const opened = await logAt(join(file.work, 'main'), file.tpm, file.config);
    await opened.log.open();
    expect(opened.log.head().size).toBe(31);
    await expect(opened.log.append(event(31))).resolves.toMatchObject({ seq: 31 });
    await opened.close();
  });

  it('NV_Certify of both indices, qualified with the nonce, verifies with the AK', async () => {
    const anchor = new TpmAuditAnchor(file.tpm, file.config);
    const nonce = Buffer.from('11'.repeat(32), 'hex');
    const certs = await anchor.certify(nonce);
    const akPublic = await anchor.akPublic();
    expect(akPublic).toBeDefined();
    const ak = unmarshalTpm2bPublic(akPublic!);
    const state = await anchor.read();
    expect(certs.map((c) => c.index)).toEqual(['counter', 'extend']);
    for (const c of certs) {
      const attest = unmarshalTpmsAttest(c.attest);
      expect(attest.magic).toBe(TPM_GENERATED_VALUE);
      expect(Buffer.from(attest.extraData).equals(nonce)).toBe(true);
      expect(attest.attested.type).toBe(TPM_ST.ATTEST_NV);
      if (attest.attested.type !== TPM_ST.ATTEST_NV) throw new Error('not NV');
      const contents = Buffer.from(attest.attested.nvContents);
      if (c.index === 'extend') expect(contents.equals(state.extendValue)).toBe(true);
      else expect(contents.readBigUInt64BE(0)).toBe(state.counter);
      const name =
        c.index === 'extend' ? file.config.pinnedNames.extend : file.config.pinnedNames.counter;
      expect(Buffer.from(attest.attested.indexName).toString('hex')).toBe(name);
      verifyTpmtSignature(ak, unmarshalTpmtSignature(c.signature), c.attest);
      const tampered = Buffer.from(c.attest);
      tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
      expect(() => {
        verifyTpmtSignature(ak, unmarshalTpmtSignature(c.signature), tampered);
      }).toThrow();
    }
  });

  it('refuses a store restored from an older copy', async () => {
    const a = await logAt(join(file.work, 'restore'), file.tpm, file.config);
    await a.log.open().catch(() => undefined);
    // This TPM already anchored 'main': a fresh store here is behind it.
    expect(a.log.state).toBe('refused');
    await a.close();
    // So: copy 'main' aside, append more, restore the copy.
    await cp(join(file.work, 'main'), join(file.work, 'main-copy'), { recursive: true });
    const live = await logAt(join(file.work, 'main'), file.tpm, file.config);
    await live.log.open();
    await Promise.all([live.log.append(event(40)), live.log.append(event(41))]);
    await live.close();
    const logger = captureLogger();
    const restored = await logAt(join(file.work, 'main-copy'), file.tpm, file.config, {}, logger);
    await expect(restored.log.open()).rejects.toMatchObject(rollback('store_behind_anchor'));
    await expect(restored.log.append(event(50))).rejects.toMatchObject({
      code: 'audit_rollback_detected',
    });
    expect(logger.lines.some((l) => l.msg.includes('the store is behind'))).toBe(true);
    await restored.close();
  });

  it('never serves a rewritten old entry (the full replay names it) and refuses a truncated tail', async () => {
    await cp(join(file.work, 'main'), join(file.work, 'edited'), { recursive: true });
    const opened = await logAt(join(file.work, 'edited'), file.tpm, file.config);
    const sub = opened.db.sublevel('audit', { valueEncoding: 'utf8' });
    const key = `e!${'5'.padStart(16, '0')}`;
    const original = await sub.get(key);
    const e = JSON.parse(original ?? '') as AuditEntry;
    const forged = { ...e, decision: 'allow', subject: 'rt_forged' };
    await sub.put(key, JSON.stringify({ ...forged, hash: entryHash(forged) }));
    // Start-up reads the last batch only (docs/audit.md, "What start-up checks"): an entry
    // before it is checked against its leaf when read, and by the full replay.
    await opened.log.open();
    await expect(opened.log.entries(5, 1)).rejects.toMatchObject({ code: 'audit_unavailable' });
    await expect(
      replayLog(new LevelAuditStore(opened.db), { derived: () => Promise.resolve() }),
    ).rejects.toMatchObject({ details: { reason: 'store_entry_broken', seq: 6 } });
    await opened.close();

    await rm(join(file.work, 'edited'), { recursive: true });
    await cp(join(file.work, 'main'), join(file.work, 'edited'), { recursive: true });
    const truncated = await logAt(join(file.work, 'edited'), file.tpm, file.config);
    const sub2 = truncated.db.sublevel('audit', { valueEncoding: 'utf8' });
    const last = (await sub2.keys({ gte: 'e!', lt: 'e!~', reverse: true, limit: 1 }).all())[0];
    await sub2.del(last!);
    await expect(truncated.log.open()).rejects.toMatchObject(rollback('store_truncated'));
    await truncated.close();
  });

  it("refuses another appliance's store", async () => {
    const other = await startSimTpm();
    const otherTpm = await NativeTpm.open(other.tcti);
    try {
      const otherConfig = await provisionAnchor(otherTpm);
      // Same indices and attributes: the same pinned names on both appliances.
      expect(otherConfig.pinnedNames).toEqual(file.config.pinnedNames);
      const theirs = await logAt(join(file.work, 'other'), otherTpm, otherConfig);
      await theirs.log.provision();
      await theirs.log.open();
      await Promise.all(Array.from({ length: 40 }, (_, i) => theirs.log.append(event(i))));
      await theirs.close();
      const swapped = await logAt(join(file.work, 'other'), file.tpm, file.config);
      await expect(swapped.log.open()).rejects.toMatchObject({ code: 'audit_rollback_detected' });
      await swapped.close();
    } finally {
      await otherTpm.close();
      await other.destroy();
    }
  });

  it('refuses a redefined NV index (other attributes: pinned name differs)', async () => {
    const ownerAuth = { hierarchy: 'owner' as const, hierarchyAuth: new Uint8Array(0) };
    const before = await new TpmAuditAnchor(file.tpm, file.config).read();
    await file.tpm.nvUndefine(INDICES.extendIndex, ownerAuth);
    const logger = captureLogger();
    const gone = await logAt(join(file.work, 'main'), file.tpm, file.config, {}, logger);
    await expect(gone.log.open()).rejects.toMatchObject(rollback('pinned_nv_name_mismatch'));
    await gone.close();
    // Redefined without noDA, then replayed up to the same value.
    await file.tpm.nvDefine(
      {
        index: INDICES.extendIndex,
        nameAlg: 'sha256',
        attributes: (ANCHOR_NV_ATTRIBUTES & ~(1 << 25)) | (0x4 << 4),
        dataSize: 32,
      },
      ownerAuth,
    );
    const redefined = await logAt(join(file.work, 'main'), file.tpm, file.config, {}, logger);
    await expect(redefined.log.open()).rejects.toMatchObject(rollback('pinned_nv_name_mismatch'));
    await redefined.close();
    expect(logger.lines.some((l) => l.msg.includes('redefined'))).toBe(true);
    expect(before.counter).toBeGreaterThan(0n);
  });

  it('refuses a redefinition with the same attributes replayed to the old value (counter)', async () => {
    const ownerAuth = { hierarchy: 'owner' as const, hierarchyAuth: new Uint8Array(0) };
    // Put the extend index back exactly as provisioned and replay every root into it.
    await file.tpm.nvUndefine(INDICES.extendIndex, ownerAuth);
    await file.tpm.nvUndefine(INDICES.counterIndex, ownerAuth);
    const replayed = await provisionAnchor(file.tpm);
    expect(replayed.pinnedNames).toEqual(file.config.pinnedNames);
    const opened = await logAt(join(file.work, 'main'), file.tpm, file.config);
    // Replay every batch root of the store: the extend value now matches the store...
    const sub = opened.db.sublevel('audit', { valueEncoding: 'utf8' });
    const auth = { by: 'owner' as const };
    for (const record of await sub.values({ gte: 'b!', lt: 'b!~' }).all()) {
      const { root } = JSON.parse(record) as { root: string };
      await file.tpm.nvExtend(INDICES.extendIndex, Buffer.from(root, 'hex'), { auth });
    }
    // ...but a redefined counter starts above the highest count this TPM ever had.
    await expect(opened.log.open()).rejects.toMatchObject(rollback('store_behind_anchor'));
    await opened.close();
  });

  it('tpm2-tools reads the same anchor and attributes', async () => {
    const anchor = new TpmAuditAnchor(file.tpm, file.config);
    const state = await anchor.read();
    await file.tpm.close();
    const env = { ...process.env, TPM2TOOLS_TCTI: file.sim.tcti };
    const out = join(file.work, 'extend.bin');
    await run(
      'tpm2_nvread',
      ['-C', 'o', '-s', '32', '-o', out, `0x${INDICES.extendIndex.toString(16)}`],
      { env },
    );
    const { readFile } = await import('node:fs/promises');
    expect((await readFile(out)).equals(state.extendValue)).toBe(true);
    // The attribute words as tpm2-tools reads them: ours, the type, and TPMA_NV_WRITTEN.
    const written = 1 << 29;
    for (const [index, nt] of [
      [INDICES.extendIndex, 0x4],
      [INDICES.counterIndex, 0x1],
    ] as const) {
      const pub = await run('tpm2_nvreadpublic', [`0x${index.toString(16)}`], { env });
      const value = /attributes:[\s\S]*?value: (0x[0-9a-fA-F]+)/.exec(pub.stdout)?.[1];
      expect(Number(value)).toBe((ANCHOR_NV_ATTRIBUTES | (nt << 4) | written) >>> 0);
      expect(pub.stdout).toMatch(/ownerwrite\|.*ownerread\|authread\|no_da\|written/);
      expect(pub.stdout).not.toMatch(/policy_delete|platformcreate|orderly/);
    }
    file.tpm = await NativeTpm.open(file.sim.tcti);
  });

  it('certifies the anchor while the TPM is in dictionary-attack lockout: its AK is noDA', async () => {
    const env = { ...process.env, TPM2TOOLS_TCTI: file.sim.tcti };
    const lockout = (args: string[]) => run('tpm2_dictionarylockout', args, { env });
    await file.tpm.close();
    // One try allowed, then an unorderly shutdown (the simulator killed, as a power loss on
    // a real TPM) counts as a failure: the TPM is in lockout and refuses every
    // DA-protected authorisation (TPM_RC_LOCKOUT).
    await lockout(['-s', '-n', '1', '-t', '1000', '-l', '1000']);
    // A DA-protected authorisation in this boot (the runtimes' AK template, without noDA):
    // only then does an unorderly shutdown count.
    const daTemplate = { ...file.config, akTemplate: marshalTpmtPublic(AK_TEMPLATE_ECC_P256) };
    file.tpm = await NativeTpm.open(file.sim.tcti);
    await new TpmAuditAnchor(file.tpm, daTemplate).read().catch(() => undefined);
    await file.tpm.close();
    await file.sim.stop();
    await file.sim.restart();
    const props = await run('tpm2_getcap', ['properties-variable'], { env });
    expect(props.stdout).toMatch(/inLockout:\s+1/);
    file.tpm = await NativeTpm.open(file.sim.tcti);
    try {
      const state = await new TpmAuditAnchor(file.tpm, file.config).read();
      expect(state.extendValue).toHaveLength(32);
      // The same read with the runtimes' AK template (no noDA) is refused: the test can fail.
      const daProtected = new TpmAuditAnchor(file.tpm, daTemplate);
      const refused: unknown = await daProtected.read().then(
        () => undefined,
        (e: unknown) => e,
      );
      const messages: string[] = [];
      for (let e = refused; e instanceof Error; e = e.cause) messages.push(e.message);
      expect(messages.join(' | ')).toMatch(/lockout/i);
    } finally {
      await file.tpm.close();
      await lockout(['-c']);
      await lockout(['-s', '-n', '32', '-t', '1', '-l', '1']);
      file.tpm = await NativeTpm.open(file.sim.tcti);
    }
  });
});

/** Tree sizes at the end of each batch for the test above: 1, then the rest at once. */
function batchSizes(batches: number, size: number): number[] {
  if (batches === 2) return [1, size];
  throw new Error(`unexpected batch count ${batches}`);
}
