/**
 * Audit metrics measured at the log's two ports, so the log core stays as it is: a batch
 * becomes durable when the store's appendBatch resolves and committed when the anchor's
 * NV_Increment that follows resolves (docs/audit.md: store, extend, increment, in that
 * order, one increment per batch). In between its entries are the anchor lag.
 *
 * - audit_batch_size: entries of each batch, observed when its increment succeeds;
 * - nv_writes_total{index}: successful NV_Extend (`extend`) and NV_Increment (`counter`);
 * - anchor_lag_entries / anchor_lag_seconds: stored batches not yet anchored (a TPM outage
 *   leaves them there until the log's reconciliation anchors them).
 *
 * A batch left un-anchored by a crash is anchored by the start-up reconciliation of the
 * next process, which did not see it stored: it is not counted (the lag starts at 0).
 */
import type { GrantorMetrics } from '../shared/metrics.js';
import type { AuditAnchor } from './anchor.port.js';
import type { AuditStore } from './audit-store.port.js';
import { overlay } from '../shared/overlay.js';

export type AuditMetrics = Pick<GrantorMetrics, 'auditBatchSize' | 'nvWrites' | 'setAnchorLag'>;

/** Stored batches waiting for their increment, oldest first. */
class PendingBatches {
  readonly #pending: { entries: number; at: number }[] = [];

  readonly #metrics: AuditMetrics;
  readonly #now: () => number;

  constructor(metrics: AuditMetrics, now: () => number) {
    this.#metrics = metrics;
    this.#now = now;
  }

  stored(entries: number): void {
    this.#pending.push({ entries, at: this.#now() });
    this.#publish();
  }

  anchored(): void {
    const batch = this.#pending.shift();
    if (batch !== undefined) this.#metrics.auditBatchSize.observe(batch.entries);
    this.#publish();
  }

  #publish(): void {
    const entries = this.#pending.reduce((n, b) => n + b.entries, 0);
    this.#metrics.setAnchorLag(entries, this.#pending[0]?.at);
  }
}

export interface MeteredAudit {
  /** The log's store, counting the batches it makes durable. */
  readonly store: (store: AuditStore) => AuditStore;
  /** The log's anchor, counting NV writes and the batches it commits. */
  readonly anchor: (anchor: AuditAnchor) => AuditAnchor;
}

/** Decorators for ONE audit log's store and anchor (they share its pending batches). */
export function meterAudit(metrics: AuditMetrics, now: () => number = Date.now): MeteredAudit {
  const pending = new PendingBatches(metrics, now);
  return {
    store: (store) =>
      overlay(store, {
        appendBatch: async (write) => {
          await store.appendBatch(write);
          pending.stored(write.entries.length);
        },
      }),
    anchor: (anchor) => {
      const writeBatch = anchor.writeBatch?.bind(anchor);
      return overlay(anchor, {
        ...(writeBatch === undefined
          ? {}
          : {
              writeBatch: (root, stored, landed) =>
                writeBatch(root, stored, (write) => {
                  metrics.nvWrites.inc({ index: write === 'extend' ? 'extend' : 'counter' });
                  if (write === 'increment') pending.anchored();
                  landed(write);
                }),
            }),
        extend: async (data) => {
          await anchor.extend(data);
          metrics.nvWrites.inc({ index: 'extend' });
        },
        increment: async () => {
          await anchor.increment();
          metrics.nvWrites.inc({ index: 'counter' });
          pending.anchored();
        },
      });
    },
  };
}
