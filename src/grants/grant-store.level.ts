/**
 * Grants in LevelDB: `db.sublevel('grants')` with keys `g!<grantId>` (the record as JSON),
 * `c!<parentId>!<childId>` (lineage links), `r!<runtimeId>!<grantId>` (the grants of a
 * runtime, for the cascade of a runtime revoke; grants stored before this index existed
 * are not listed, and redeem refuses them by their runtime's state instead), `q!<runtimeId>!<requestId>` (used requestIds,
 * value: expiry in epoch ms) and `x!<expiry, 16 digits>!<runtimeId>!<requestId>` (the
 * same requestIds indexed by expiry, written in the same batch, so pruning reads only
 * what it deletes). Grant writes are synced batches; the requestId of the request that
 * produced a grant is written in the grant's own batch (one write per grant, durable
 * before the grant is released). A requestId written on its own (a denied request) is
 * unsynced: a crash can only forget the id of a request that released nothing.
 * `m!reconciled` holds how far the audit log was checked for unreleased allows.
 * The revocation feed (revocations.port.ts): `v!<seq, 16 digits>` (the event as JSON), written
 * in the synced batch of the revocation it records; `m!revocations-floor`, the highest
 * sequence number pruned, raised in the batch that deletes. `p!<id>`: an audit entry owed
 * for a change already written (audit-pending.ts), put in the change's own synced batch and
 * deleted once the entry is in the log.
 */
import { LevelRoom, type Database, type RoomOp } from '../shared/db.level.js';
import type { RevocationBounds, RevocationEvent } from './revocations.port.js';
import type {
  GrantRecord,
  GrantStore,
  LiveRequest,
  LiveRequests,
  PendingAudit,
  PendingAuditChange,
  UsedRequest,
} from './grant-store.port.js';

// encodeURIComponent leaves `!` (the key separator) as is: escape it too.
const enc = (id: string): string => encodeURIComponent(id).replace(/!/g, '%21');
// Fixed width, so that the keys sort by expiry (epoch ms has 13 digits until the year 2286).
const EXPIRY_DIGITS = 16;
const expiryKey = (ms: number): string =>
  String(Math.min(Math.max(0, Math.floor(ms)), 10 ** EXPIRY_DIGITS - 1)).padStart(
    EXPIRY_DIGITS,
    '0',
  );

/** A used requestId and its expiry index entry. */
function requestOps(
  runtimeId: string,
  requestId: string,
  expiresAt: number,
): { key: string; value: string }[] {
  const ids = `${enc(runtimeId)}!${enc(requestId)}`;
  return [
    { key: `q!${ids}`, value: String(expiresAt) },
    { key: `x!${expiryKey(expiresAt)}!${ids}`, value: '' },
  ];
}

const seqKey = (seq: number): string => `v!${String(seq).padStart(EXPIRY_DIGITS, '0')}`;
const FLOOR = 'm!revocations-floor';

function storedSeq(text: string | undefined): number {
  const n = text === undefined ? 0 : Number(text);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** Puts of text values, the most common change of this room. */
const puts = (ops: readonly { key: string; value: string }[]): RoomOp[] =>
  ops.map((op) => ({ type: 'put', ...op }));

export class LevelGrantStore extends LevelRoom implements GrantStore {
  constructor(db: Database) {
    super(db, 'grants');
  }

  async get(grantId: string): Promise<GrantRecord | undefined> {
    const text = await this.sub.get(`g!${enc(grantId)}`);
    return text === undefined ? undefined : (JSON.parse(text) as GrantRecord);
  }

  async create(record: GrantRecord, used?: UsedRequest): Promise<void> {
    await this.write(
      puts([
        { key: `g!${enc(record.grantId)}`, value: JSON.stringify(record) },
        ...(record.parent === null
          ? []
          : [{ key: `c!${enc(record.parent)}!${enc(record.grantId)}`, value: '' }]),
        { key: `r!${enc(record.runtimeId)}!${enc(record.grantId)}`, value: '' },
        ...(used === undefined ? [] : requestOps(used.runtimeId, used.requestId, used.expiresAt)),
      ]),
    );
  }

  async update(
    records: readonly GrantRecord[],
    revocations: readonly RevocationEvent[] = [],
    pending: PendingAuditChange = {},
  ): Promise<void> {
    await this.write([
      ...[
        ...records.map((r) => ({ key: `g!${enc(r.grantId)}`, value: JSON.stringify(r) })),
        ...revocations.map((e) => ({ key: seqKey(e.seq), value: JSON.stringify(e) })),
        ...(pending.put ?? []).map((p) => ({ key: `p!${enc(p.id)}`, value: JSON.stringify(p) })),
      ].map((op) => ({ type: 'put' as const, ...op })),
      ...(pending.done ?? []).map((id) => ({ type: 'del' as const, key: `p!${enc(id)}` })),
    ]);
  }

  async pendingAudits(limit: number): Promise<PendingAudit[]> {
    const rows = await this.sub.values({ gt: 'p!', lt: 'p!\uffff', limit }).all();
    return rows.map((text) => JSON.parse(text) as PendingAudit);
  }

  async revocationsSince(since: number, limit: number): Promise<RevocationEvent[]> {
    const rows = await this.sub.values({ gt: seqKey(since), lt: 'v!\uffff', limit }).all();
    return rows.map((text) => JSON.parse(text) as RevocationEvent);
  }

  async revocationBounds(): Promise<RevocationBounds> {
    const floor = storedSeq(await this.sub.get(FLOOR));
    const [last] = await this.sub.keys({ gt: 'v!', lt: 'v!\uffff', reverse: true, limit: 1 }).all();
    // Everything pruned: the head is the floor.
    const head = last === undefined ? floor : storedSeq(last.slice(2));
    return { floor, head: Math.max(head, floor) };
  }

  async pruneRevocations(beforeSec: number, limit: number): Promise<number> {
    const rows = await this.sub.iterator({ gt: 'v!', lt: 'v!\uffff', limit }).all();
    const dels: string[] = [];
    let floor: number | undefined;
    for (const [key, text] of rows) {
      const event = JSON.parse(text) as RevocationEvent;
      // A prefix only: the floor then says exactly what a gateway may have missed.
      if (event.exp >= beforeSec) break;
      dels.push(key);
      floor = event.seq;
    }
    if (floor === undefined) return 0;
    await this.write([
      ...dels.map((key) => ({ type: 'del' as const, key })),
      { type: 'put' as const, key: FLOOR, value: String(floor) },
    ]);
    return dels.length;
  }

  async children(grantId: string): Promise<string[]> {
    const prefix = `c!${enc(grantId)}!`;
    const out: string[] = [];
    for await (const key of this.sub.keys({ gte: prefix, lt: `${prefix}\uffff` })) {
      out.push(decodeURIComponent(key.slice(prefix.length)));
    }
    return out;
  }

  async grantsOf(runtimeId: string): Promise<string[]> {
    const prefix = `r!${enc(runtimeId)}!`;
    const out: string[] = [];
    for await (const key of this.sub.keys({ gte: prefix, lt: `${prefix}\uffff` })) {
      out.push(decodeURIComponent(key.slice(prefix.length)));
    }
    return out;
  }

  async hasRequest(runtimeId: string, requestId: string): Promise<boolean> {
    return (await this.sub.get(`q!${enc(runtimeId)}!${enc(requestId)}`)) !== undefined;
  }

  async putRequest(runtimeId: string, requestId: string, expiresAt: number): Promise<void> {
    await this.write(puts(requestOps(runtimeId, requestId, expiresAt)), false);
  }

  async reconciledUpTo(): Promise<number> {
    const text = await this.sub.get('m!reconciled');
    const seq = text === undefined ? 0 : Number(text);
    // A damaged mark checks the whole log again: slower, never a skipped entry.
    return Number.isSafeInteger(seq) && seq >= 0 ? seq : 0;
  }

  async setReconciledUpTo(seq: number): Promise<void> {
    await this.write(puts([{ key: 'm!reconciled', value: String(seq) }]));
  }

  /** Reads every `q!` entry (indexed or not), so that nothing remembered is left out. */
  async liveRequests(sinceMs: number, limit: number): Promise<LiveRequests> {
    const ids: LiveRequest[] = [];
    let complete = true;
    for await (const [key, value] of this.sub.iterator({ gt: 'q!', lt: 'q!\uffff' })) {
      // An unreadable expiry is kept (as never expiring) rather than forgotten.
      const stored = Number(value);
      const expiresAt = Number.isFinite(stored) ? stored : Number.POSITIVE_INFINITY;
      if (expiresAt < sinceMs) continue;
      if (ids.length === limit) return { ids, complete: false };
      let parts: string[];
      try {
        parts = key.slice(2).split('!').map(decodeURIComponent);
      } catch {
        // A key this code never writes: the store alone can answer for it.
        complete = false;
        continue;
      }
      const [runtimeId = '', requestId = ''] = parts;
      ids.push({ runtimeId, requestId, expiresAt });
    }
    return { ids, complete };
  }

  /** Where the one pass over requestIds stored without an expiry index has got to. */
  #unindexedFrom: string | undefined = 'q!';

  async pruneRequests(beforeMs: number, limit: number): Promise<number> {
    const dels: string[] = [];
    let pruned = 0;
    const upper = `x!${expiryKey(beforeMs)}`;
    const indexed = await this.sub.keys({ gte: 'x!', lt: upper, limit }).all();
    const current = await this.sub.getMany(indexed.map((k) => `q!${k.slice(EXPIRY_DIGITS + 3)}`));
    indexed.forEach((key, i) => {
      dels.push(key);
      // The id's entry goes only if it is still the one this index key was written for.
      if (current[i] === String(Number(key.slice(2, 2 + EXPIRY_DIGITS)))) {
        dels.push(`q!${key.slice(EXPIRY_DIGITS + 3)}`);
      }
      pruned += 1;
    });
    // Ids stored before the index existed: one bounded pass per process, in slices.
    const from = this.#unindexedFrom;
    const budget = limit - pruned;
    if (from !== undefined && budget > 0) {
      const slice = await this.sub.iterator({ gt: from, lt: 'q!\uffff', limit: budget }).all();
      const expired = slice.filter(([, value]) => Number(value) < beforeMs);
      // An id with an index entry is the indexed sweep's to forget (once, and counted once).
      const index = await this.sub.getMany(
        expired.map(([key, value]) => `x!${expiryKey(Number(value))}!${key.slice(2)}`),
      );
      expired.forEach(([key], i) => {
        if (index[i] === undefined) {
          dels.push(key);
          pruned += 1;
        }
      });
      this.#unindexedFrom = slice.length < budget ? undefined : slice.at(-1)?.[0];
    }
    if (dels.length > 0) {
      await this.write(
        dels.map((key) => ({ type: 'del' as const, key })),
        false,
      );
    }
    return pruned;
  }
}
