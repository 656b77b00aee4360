import { describe, expect, it } from 'vitest';
import { AuditNotFoundError, type AuditEntry, type AuditEvent } from '../audit/index.js';
import { createFakeGrantStore } from './grant-store.memory.js';
import type { GrantRecord } from './grant-store.port.js';
import { NOT_RELEASED, markUnreleased, type UnreleasedAudit } from './unreleased.js';

/** A log in memory with the two calls the marking makes. */
class Log implements UnreleasedAudit {
  readonly entries_: AuditEntry[] = [];
  reads: [number, number][] = [];

  add(event: AuditEvent): void {
    const seq = this.entries_.length;
    this.entries_.push({
      ...event,
      seq,
      time: '2026-11-27T10:00:00.000Z',
      prevHash: '00'.repeat(32),
      hash: seq.toString(16).padStart(64, '0'),
    });
  }

  entries(from: number, limit: number): Promise<AuditEntry[]> {
    this.reads.push([from, limit]);
    // As the real log does past its end.
    if (from >= this.entries_.length)
      return Promise.reject(new AuditNotFoundError(`no entry ${from}`));
    return Promise.resolve(this.entries_.slice(from, from + limit));
  }

  append(event: AuditEvent): Promise<{ seq: number; hash: string }> {
    this.add(event);
    const last = this.entries_.at(-1);
    return Promise.resolve({ seq: last?.seq ?? -1, hash: last?.hash ?? '' });
  }
}

const digest = (n: number): string => n.toString(16).padStart(64, 'a');
const allow = (subject: string, n: number): AuditEvent => ({
  type: 'grant.decision',
  subject,
  decision: 'allow',
  reasons: ['pol:x', 'p1'],
  digest: digest(n),
});
const record = (grantId: string): GrantRecord => ({
  grantId,
  runtimeId: 'rt',
  action: 'tickets.read',
  resource: 'r',
  audience: 'gw',
  parent: null,
  root: grantId,
  depth: 0,
  iat: 1,
  exp: 2,
  auditSeq: 0,
  revokedAt: null,
  redemption: null,
});

describe('markUnreleased', () => {
  it('marks each allow with neither a grant record nor a mark, once, with its digest', async () => {
    const log = new Log();
    const store = createFakeGrantStore();
    log.add({ type: 'key.rotated', subject: 'k1', digest: digest(0) });
    log.add(allow('gr_released', 1));
    await store.create(record('gr_released'));
    log.add(allow('gr_lost', 2));
    log.add(allow('gr_failed', 3));
    log.add({
      type: 'grant.issue_failed',
      subject: 'gr_failed',
      decision: 'failed',
      reasons: ['hsm_unavailable'],
      digest: digest(3),
    });
    log.add({ type: 'grant.decision', subject: 'gr_denied', decision: 'deny', digest: digest(4) });
    log.add(allow('gr_lost_too', 5));
    const size = log.entries_.length;

    expect(await markUnreleased(log, store, 2)).toBe(2);
    expect(log.entries_.slice(size).map((e) => [e.type, e.subject, e.reasons, e.digest])).toEqual([
      ['grant.issue_failed', 'gr_lost', [NOT_RELEASED], digest(2)],
      ['grant.issue_failed', 'gr_lost_too', [NOT_RELEASED], digest(5)],
    ]);
    // Read in pages of 2 from the start; the mark is where the scan ended.
    expect(log.reads.map(([from]) => from)).toEqual([0, 2, 4, 6, 7]);
    expect(await store.reconciledUpTo()).toBe(size);

    // The next start reads only what came since, and marks nothing twice.
    log.reads = [];
    log.add(allow('gr_next', 9));
    expect(await markUnreleased(log, store, 100)).toBe(1);
    expect(log.reads[0]?.[0]).toBe(size);
    expect(log.entries_.at(-1)).toMatchObject({ subject: 'gr_next', reasons: [NOT_RELEASED] });
    expect(await markUnreleased(log, store, 100)).toBe(0);
  });

  it('appends failing halfway leave the mark; the next start marks only what is still unmarked', async () => {
    const log = new Log();
    for (const id of ['gr_1', 'gr_2', 'gr_3']) log.add(allow(id, 1));
    const store = createFakeGrantStore();
    const append = log.append.bind(log);
    let calls = 0;
    log.append = (event) =>
      ++calls === 2 ? Promise.reject(new Error('anchor down')) : append(event);
    await expect(markUnreleased(log, store)).rejects.toThrow('anchor down');
    expect(await store.reconciledUpTo()).toBe(0);
    log.append = append;
    expect(await markUnreleased(log, store)).toBe(1);
    const marks = log.entries_.filter((e) => e.type === 'grant.issue_failed').map((e) => e.subject);
    expect(marks.sort()).toEqual(['gr_1', 'gr_2', 'gr_3']);
  });

  it('a store that cannot answer fails the marking and leaves the mark where it was', async () => {
    const log = new Log();
    log.add(allow('gr_a', 1));
    const store = createFakeGrantStore();
    await store.setReconciledUpTo(0);
    store.get = () => Promise.reject(new Error('io error'));
    await expect(markUnreleased(log, store)).rejects.toThrow('io error');
    expect(await store.reconciledUpTo()).toBe(0);
    expect(log.entries_).toHaveLength(1);
  });
});
