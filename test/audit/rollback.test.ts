/**
 * The rollback of issue 13, on swtpm and LevelDB: an attacker with the disk and the (empty)
 * owner authorisation undefines both anchor indices, defines them again with the same
 * attributes (same names, so the name pin holds), replays a backup's batch roots into the
 * extend index and sets the backup store's genesis to `counter - batches`. With the genesis
 * taken from the store, the backup (1 entry) was accepted over the live log (4 acknowledged
 * entries) and appends continued at seq 1. The genesis is now pinned beside the names.
 * Also: the TPM's counter rule that the pin relies on, measured on swtpm.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { TpmAuditAnchor, provisionTpmAnchor } from '../../src/audit/anchor.tpm.js';
import { INDICES, backupBehindLive, event, logAt, provisionAnchor, useTpmFile } from './helpers.js';

const file = useTpmFile('grantor-audit-rollback-', null);

const owner = { hierarchy: 'owner' as const, hierarchyAuth: new Uint8Array(0) };
const ownerWrite = { auth: { by: 'owner' as const } };

describe('the TPM counter rule the pinned genesis relies on (swtpm)', () => {
  it('a redefined counter starts above the count its undefined predecessor held', async () => {
    const a = 0x01500060;
    const b = 0x01500061;
    const space = (index: number) => ({
      index,
      nameAlg: 'sha256' as const,
      // ownerWrite | ownerRead | authRead | noDA, TPM_NT_COUNTER
      attributes: (1 << 1) | (1 << 17) | (1 << 18) | (1 << 25) | (0x1 << 4),
      dataSize: 8,
    });
    await file.tpm.nvDefine(space(a), owner);
    for (let i = 0; i < 5; i++) await file.tpm.nvIncrement(a, ownerWrite);
    const high = await file.tpm.nvReadCounter(a, ownerWrite);
    await file.tpm.nvUndefine(a, owner);
    await file.tpm.nvDefine(space(a), owner);
    await file.tpm.nvIncrement(a, ownerWrite);
    const redefined = await file.tpm.nvReadCounter(a, ownerWrite);
    expect(redefined).toBe(high + 1n);
    // The TPM remembers the highest count of an UNDEFINED counter (maxCount): a second new
    // counter starts from there too, not above the live one (this swtpm: 6, not 7). What the
    // pin needs holds: redefining the anchor counter means undefining it first.
    await file.tpm.nvDefine(space(b), owner);
    await file.tpm.nvIncrement(b, ownerWrite);
    expect(await file.tpm.nvReadCounter(b, ownerWrite)).toBe(high + 1n);
    await file.tpm.nvUndefine(a, owner);
    await file.tpm.nvUndefine(b, owner);
    await file.tpm.nvDefine(space(a), owner);
    await file.tpm.nvIncrement(a, ownerWrite);
    expect(await file.tpm.nvReadCounter(a, ownerWrite)).toBe(redefined + 1n);
    await file.tpm.nvUndefine(a, owner);
  });
});

describe('a third party writing the anchor while the log runs', () => {
  it('is noticed at the next anchor write (anchor_foreign_write), not the next start', async () => {
    const indices = { counterIndex: 0x01500064, extendIndex: 0x01500065 };
    const config = await provisionAnchor(file.tpm, indices);
    const opened = await logAt(join(file.work, 'foreign'), file.tpm, config);
    await opened.log.provision();
    await opened.log.open();
    await opened.log.append(event(0));
    // With the (empty) owner authorisation, as tpm2_nvincrement -C o would.
    await file.tpm.nvIncrement(indices.counterIndex, ownerWrite);
    await expect(opened.log.append(event(1))).rejects.toMatchObject({
      code: 'audit_rollback_detected',
      details: { reason: 'anchor_foreign_write' },
    });
    await opened.close();
  });
});

describe('rollback by redefining the anchor and replaying a backup (issue 13)', () => {
  let config: TpmAnchorConfig;
  let forgedGenesis: bigint;

  it('sets the scene: a backup with 1 entry, a live log with 4 acknowledged entries', async () => {
    config = await provisionAnchor(file.tpm);
    expect(await backupBehindLive(file.work, file.tpm, config, 4)).toMatchObject({
      size: 4,
      batches: 4,
    });
  });

  it('performs the attack: redefine both indices, replay the roots, rewrite the genesis', async () => {
    await file.tpm.nvUndefine(INDICES.extendIndex, owner);
    await file.tpm.nvUndefine(INDICES.counterIndex, owner);
    const redone = await provisionTpmAnchor(file.tpm, INDICES);
    // Same attributes: the same NV names, so the name pin alone holds.
    expect(redone.names).toEqual(config.pinnedNames);
    const backup = await logAt(join(file.work, 'backup'), file.tpm, config);
    const sub = backup.db.sublevel('audit', { valueEncoding: 'utf8' });
    const roots = (await sub.values({ gte: 'b!', lt: 'b!~' }).all()).map(
      (r) => (JSON.parse(r) as { root: string }).root,
    );
    expect(roots).toHaveLength(1);
    for (const root of roots) {
      await file.tpm.nvExtend(INDICES.extendIndex, Buffer.from(root, 'hex'), ownerWrite);
    }
    const counter = await file.tpm.nvReadCounter(INDICES.counterIndex, ownerWrite);
    forgedGenesis = counter - BigInt(roots.length);
    const meta = JSON.parse((await sub.get('meta')) ?? '') as Record<string, unknown>;
    await sub.put('meta', JSON.stringify({ ...meta, genesisCounter: forgedGenesis.toString() }));
    await backup.close();
    // The pinned genesis is below: the redefined counter started above the live log's count.
    expect(forgedGenesis).toBeGreaterThan(config.pinnedGenesis ?? 0n);
  });

  it('would be accepted with the genesis the store states (the old design), appending at seq 1', async () => {
    const asStored = { ...config, pinnedGenesis: forgedGenesis };
    await cp(join(file.work, 'backup'), join(file.work, 'backup-old-design'), { recursive: true });
    const opened = await logAt(join(file.work, 'backup-old-design'), file.tpm, asStored);
    await opened.log.open();
    // Nothing is written: appending here would move the TPM on for the next case.
    expect(opened.log.head()).toMatchObject({ size: 1, batches: 1 });
    await opened.close();
  });

  it('is refused against the pinned genesis: store_genesis_mismatch', async () => {
    const opened = await logAt(join(file.work, 'backup'), file.tpm, config);
    await expect(opened.log.open()).rejects.toMatchObject({
      code: 'audit_rollback_detected',
      details: {
        reason: 'store_genesis_mismatch',
        storeGenesis: forgedGenesis.toString(),
        pinnedGenesis: (config.pinnedGenesis ?? 0n).toString(),
      },
    });
    await expect(opened.log.append(event(9))).rejects.toMatchObject({
      code: 'audit_rollback_detected',
    });
    await opened.close();
  });

  it('is refused with the genesis left alone: the counter is past genesis + 1 batch', async () => {
    const opened = await logAt(join(file.work, 'backup'), file.tpm, config);
    const sub = opened.db.sublevel('audit', { valueEncoding: 'utf8' });
    const meta = JSON.parse((await sub.get('meta')) ?? '') as Record<string, unknown>;
    await sub.put(
      'meta',
      JSON.stringify({ ...meta, genesisCounter: (config.pinnedGenesis ?? 0n).toString() }),
    );
    await expect(opened.log.open()).rejects.toMatchObject({
      code: 'audit_rollback_detected',
      details: { reason: 'store_behind_anchor' },
    });
    await opened.close();
  });

  it('an empty store on the redefined indices is not a new log (start and provisioning refuse)', async () => {
    const fresh = await logAt(join(file.work, 'empty'), file.tpm, config);
    await expect(fresh.log.provision()).rejects.toMatchObject({
      details: { reason: 'store_missing' },
    });
    await fresh.close();
    const started = await logAt(join(file.work, 'empty'), file.tpm, config);
    await expect(started.log.open()).rejects.toMatchObject({
      details: { reason: 'store_missing' },
    });
    await started.close();
    // Even with the forged extend index reset to its genesis value, the counter is not.
    await file.tpm.nvUndefine(INDICES.extendIndex, owner);
    await file.tpm.nvUndefine(INDICES.counterIndex, owner);
    await provisionTpmAnchor(file.tpm, INDICES);
    const state = await new TpmAuditAnchor(file.tpm, config).read();
    expect(state.counter).toBeGreaterThan(config.pinnedGenesis ?? 0n);
    const again = await logAt(join(file.work, 'empty'), file.tpm, config);
    await expect(again.log.provision()).rejects.toMatchObject({
      details: { reason: 'store_missing', tpmCounter: state.counter.toString() },
    });
    await again.close();
  });
});
