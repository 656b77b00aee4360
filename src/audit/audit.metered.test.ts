import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../shared/metrics.js';
import { MemoryAnchor } from './anchor.memory.js';
import { meterAudit } from './audit.metered.js';
import { MemoryAuditStore } from './audit-store.memory.js';
import type { AuditEvent } from './entry.js';
import { AuditLog } from './log.js';
import { AnchorError } from './errors.js';

const event = (i: number): AuditEvent => ({
  type: 'grant.decision',
  subject: `rt_${i}`,
  decision: 'allow',
  digest: createHash('sha256').update(`req-${i}`).digest('hex'),
});

/** The real log core over the memory adapters, its ports metered; time moves by hand. */
async function meteredLog() {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const clock = {
    now: () => t,
    sleep: async (ms: number) => {
      t += ms;
      await Promise.resolve();
    },
  };
  const metrics = createMetrics({ defaultMetrics: false, now: clock.now });
  const metered = meterAudit(metrics, clock.now);
  const anchor = new MemoryAnchor();
  const log = new AuditLog(
    metered.store(new MemoryAuditStore()),
    metered.anchor(anchor),
    {
      origin: 'grantor.test/log',
      maxBatchSize: 100,
      minAnchorIntervalMs: 0,
      anchorRetryDeadlineMs: 0,
    },
    clock,
  );
  await log.provision();
  await log.open();
  const value = async (name: string): Promise<string> =>
    (await metrics.registry.getSingleMetricAsString(name))
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n');
  return {
    log,
    anchor,
    value,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe('audit metrics at the log ports', () => {
  it('observes each committed batch and counts its two NV writes', async () => {
    const { log, value } = await meteredLog();
    await Promise.all([0, 1, 2, 3, 4].map((i) => log.append(event(i))));
    await log.append(event(5));
    const batches = log.stats().batches;
    expect(batches).toBeGreaterThanOrEqual(2);
    const sizes = await value('grantor_audit_batch_size');
    expect(sizes).toContain(`grantor_audit_batch_size_count ${batches}`);
    expect(sizes).toContain('grantor_audit_batch_size_sum 6');
    const writes = await value('grantor_nv_writes_total');
    expect(writes).toContain(`grantor_nv_writes_total{index="extend"} ${batches}`);
    expect(writes).toContain(`grantor_nv_writes_total{index="counter"} ${batches}`);
    expect(await value('grantor_anchor_lag_entries')).toBe('grantor_anchor_lag_entries 0');
    expect(await value('grantor_anchor_lag_seconds')).toBe('grantor_anchor_lag_seconds 0');
  });

  it('shows a stored batch stuck behind a TPM outage as lag, until it is anchored', async () => {
    const { log, anchor, value, advance } = await meteredLog();
    const down = new AnchorError('TPM not reachable', false);
    anchor.faults.push({ op: 'extend', error: down });
    await expect(log.append(event(0))).rejects.toMatchObject({ code: 'audit_unavailable' });
    // Durable in the store, not in the TPM: one entry, aging while nothing happens.
    expect(await value('grantor_anchor_lag_entries')).toBe('grantor_anchor_lag_entries 1');
    advance(2500);
    expect(await value('grantor_anchor_lag_seconds')).toBe('grantor_anchor_lag_seconds 2.5');
    expect(await value('grantor_audit_batch_size')).toContain('grantor_audit_batch_size_count 0');
    // The TPM is back: the next append first anchors the stuck batch, then its own.
    await expect(log.append(event(1))).resolves.toMatchObject({ seq: 1 });
    expect(await value('grantor_anchor_lag_entries')).toBe('grantor_anchor_lag_entries 0');
    expect(await value('grantor_anchor_lag_seconds')).toBe('grantor_anchor_lag_seconds 0');
    expect(await value('grantor_audit_batch_size')).toContain('grantor_audit_batch_size_count 2');
    const writes = await value('grantor_nv_writes_total');
    expect(writes).toContain('grantor_nv_writes_total{index="extend"} 2');
    expect(writes).toContain('grantor_nv_writes_total{index="counter"} 2');
  });

  it('counts no NV write that failed', async () => {
    const { log, anchor, value } = await meteredLog();
    anchor.faults.push({ op: 'increment', error: new AnchorError('connection reset', false) });
    await expect(log.append(event(0))).rejects.toMatchObject({ code: 'audit_unavailable' });
    const writes = await value('grantor_nv_writes_total');
    expect(writes).toContain('grantor_nv_writes_total{index="extend"} 1');
    expect(writes).toContain('grantor_nv_writes_total{index="counter"} 0');
    expect(await value('grantor_anchor_lag_entries')).toBe('grantor_anchor_lag_entries 1');
  });
});
