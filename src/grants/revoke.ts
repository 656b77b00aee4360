/**
 * Revocation (docs/protocol.md §3): a grant with its live descendants, every live grant of
 * a runtime, or of many runtimes on a trust change, under the lineage roots' exclusive
 * locks (root-lock.ts).
 *
 * Fail closed, never waiting for the log: the records, their feed events (revocation-feed.ts)
 * and a journal record of the `grant.revoke` entry they owe are one synced write; the entry
 * is appended next (audit-pending.ts). A log that cannot record leaves the revocation in
 * force and the entry owed: the answer says `auditPending: true` (and `auditSeq: null`), and
 * the entry is appended by a retry, or at the next start, once.
 */
import type { AuditEvent } from '../audit/index.js';
import { jcs } from '../attestation/index.js';
import { factText, fitReason } from '../audit/index.js';
import { sha256Hex, type GrantContext } from './context.js';
import { GrantNotFoundError } from './errors.js';
import type { GrantRecord } from './grant-store.port.js';
import { MAX_AUDIT_REASONS } from './reasons.js';
import type { RevocationInput } from './revocations.port.js';

/** Whether the revocation's entry is in the log (`auditSeq`) or owed (`auditPending`). */
interface Audited {
  /** The `grant.revoke` entry; null while it is owed, or when there was nothing to record. */
  readonly auditSeq: number | null;
  /** The revocation is in force and its entry not yet in the log: it is retried. */
  readonly auditPending: boolean;
}

export interface RuntimeRevokeResult extends Audited {
  readonly runtimeId: string;
  /** The runtime's live grants and their live descendants, now revoked. */
  readonly revoked: string[];
}

export interface RevokeResult extends Audited {
  readonly grantId: string;
  /** The grant and every descendant that was live and is now revoked. */
  readonly revoked: string[];
}

export interface RuntimesRevokeResult extends Audited {
  readonly runtimes: number;
  readonly revoked: string[];
}

const audited = (seq: number | null): Audited => ({ auditSeq: seq, auditPending: seq === null });

/**
 * The reasons of a `grant.revoke` entry: who, how many, and the ids, at any size. The ids
 * are named by their digest (SHA-256 of JCS of the sorted list, which the lineage route
 * lets an auditor recompute) and listed as far as the entry's 32 reasons allow; the rest
 * are counted. A revoke is never refused by the log for the size of the tree.
 */
export function revokeReasons(
  head: readonly string[],
  ids: readonly string[],
): { reasons: string[]; idsDigest: string } {
  const sorted = [...ids].sort();
  const idsDigest = sha256Hex(jcs(sorted));
  const fixed = [...head, `count:${ids.length}`, `ids:${idsDigest}`].map(fitReason);
  const room = MAX_AUDIT_REASONS - fixed.length;
  const listed =
    ids.length <= room ? ids : [...ids.slice(0, room - 1), `and ${ids.length - (room - 1)} more`];
  return { reasons: [...fixed, ...listed.map(fitReason)], idsDigest };
}

export class GrantRevoker {
  readonly #ctx: GrantContext;

  constructor(ctx: GrantContext) {
    this.#ctx = ctx;
  }

  /** Every descendant of a grant, breadth-first, nearest first, each once. */
  async descendants(grantId: string): Promise<GrantRecord[]> {
    const out: GrantRecord[] = [];
    const seen = new Set<string>([grantId]);
    let frontier = [grantId];
    while (frontier.length > 0) {
      const next: string[] = [];
      for (const id of frontier) {
        for (const child of await this.#ctx.storeCall(() => this.#ctx.deps.store.children(id))) {
          if (seen.has(child)) continue;
          seen.add(child);
          const r = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(child));
          if (r === undefined) continue;
          out.push(r);
          next.push(child);
        }
      }
      frontier = next;
    }
    return out;
  }

  /**
   * Revoke a grant and its live (unexpired, unrevoked) descendants; audited before it
   * applies. Runs alone on the grant's lineage root, so no child of the tree is checked or
   * stored meanwhile (root-lock.ts). Each grant is rewritten under its own lock, so a
   * redemption racing with the revocation is never overwritten.
   */
  async revoke(grantId: string, actor: string, now: Date): Promise<RevokeResult> {
    const first = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(grantId));
    if (first === undefined) throw new GrantNotFoundError();
    return this.#ctx.roots.exclusive(first.root, async () => {
      const targets = await this.#liveSubtree([first], now.getTime());
      const ids = targets.map((r) => r.grantId);
      const at = now.toISOString();
      const { reasons, idsDigest } = revokeReasons([`by:${actor}`], ids);
      const seq = await this.#apply(ids, at, [], {
        type: 'grant.revoke',
        subject: grantId,
        decision: 'revoked',
        reasons,
        digest: sha256Hex(jcs({ grantId, revoked: ids, idsDigest, actor, at })),
        facts: {
          grant: grantId,
          runtime: first.runtimeId,
          actor: factText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      return { grantId, revoked: ids, ...audited(seq) };
    });
  }

  /**
   * Revoke every live grant of a runtime and their live descendants (the grants-side half
   * of `POST /v1/runtimes/{id}/revoke`): one `grant.revoke` entry under the runtime's id,
   * with the count and the ids' digest, before the records change. The roots involved are
   * held in sorted order, so two cascades never wait on each other in a cycle.
   */
  async revokeRuntime(runtimeId: string, actor: string, now: Date): Promise<RuntimeRevokeResult> {
    return this.#underOwnRoots([runtimeId], now, async (ids, at) => {
      // Gateways learn of the runtime itself, whether or not it has a live grant; in the
      // same write as its grants' marks (a crash cannot keep one and lose the other).
      const runtimeEvent: RevocationInput = {
        kind: 'runtime',
        runtimeId,
        at,
        exp: Math.floor(now.getTime() / 1000) + this.#ctx.config.maxTtlSeconds,
      };
      if (ids.length === 0) {
        await this.#ctx.storeCall(() => this.#ctx.revocations.apply([], [runtimeEvent]));
        return { runtimeId, revoked: [], auditSeq: null, auditPending: false };
      }
      const { reasons, idsDigest } = revokeReasons([`by:${actor}`, `runtime:${runtimeId}`], ids);
      const seq = await this.#apply(ids, at, [runtimeEvent], {
        type: 'grant.revoke',
        subject: runtimeId,
        decision: 'revoked',
        reasons,
        digest: sha256Hex(jcs({ runtimeId, revoked: ids, idsDigest, actor, at })),
        facts: {
          grant: null,
          runtime: runtimeId,
          actor: factText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      return { runtimeId, revoked: ids, ...audited(seq) };
    });
  }

  /**
   * Revoke every live grant of `runtimeIds` and their live descendants for a trust change
   * (src/grants/trust-cascade.ts): one `grant.revoke` entry whose subject names the change,
   * with reasons `by:<actor>`, the cause, `runtimes:<n>`, `runtimeIds:<hex SHA-256 of JCS(the
   * sorted ids)>`, then `count:`, `ids:` and the ids as for any revoke; written even when no
   * grant was live (the runtimes' sessions ended with it). The roots involved are held in
   * sorted order, as by `revokeRuntime`.
   */
  async revokeRuntimes(
    runtimeIds: readonly string[],
    cause: { readonly subject: string; readonly reason: string },
    actor: string,
    now: Date,
  ): Promise<RuntimesRevokeResult> {
    const runtimes = [...new Set(runtimeIds)].sort();
    return this.#underOwnRoots(runtimes, now, async (ids, at) => {
      const runtimesDigest = sha256Hex(jcs(runtimes));
      const { reasons, idsDigest } = revokeReasons(
        [
          `by:${actor}`,
          cause.reason,
          `runtimes:${runtimes.length}`,
          `runtimeIds:${runtimesDigest}`,
        ],
        ids,
      );
      const seq = await this.#apply(ids, at, [], {
        type: 'grant.revoke',
        subject: cause.subject,
        decision: 'revoked',
        reasons,
        digest: sha256Hex(
          jcs({ cause: cause.subject, runtimes, revoked: ids, idsDigest, actor, at }),
        ),
        facts: {
          grant: null,
          runtime: null,
          actor: factText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      return { runtimes: runtimes.length, revoked: ids, ...audited(seq) };
    });
  }

  /**
   * Run `fn` holding the lineage roots of the grants issued to `runtimeIds` (sorted), with
   * the ids of those of them live at `now` and their live descendants, and `now` as text.
   */
  async #underOwnRoots<T>(
    runtimeIds: readonly string[],
    now: Date,
    fn: (ids: string[], at: string) => Promise<T>,
  ): Promise<T> {
    const own = await this.#grantsOf(runtimeIds);
    return this.#underRoots(own, async () => {
      const ids = (await this.#liveSubtree(own, now.getTime())).map((r) => r.grantId);
      return fn(ids, now.toISOString());
    });
  }

  /** The grants issued to `runtimeIds` (by the store's index, checked against the record). */
  async #grantsOf(runtimeIds: readonly string[]): Promise<GrantRecord[]> {
    const own: GrantRecord[] = [];
    for (const runtimeId of runtimeIds) {
      for (const id of await this.#ctx.storeCall(() => this.#ctx.deps.store.grantsOf(runtimeId))) {
        const r = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(id));
        if (r !== undefined && r.runtimeId === runtimeId) own.push(r);
      }
    }
    return own;
  }

  /**
   * Run `fn` holding the exclusive lock of every lineage root of `grants`, in sorted order,
   * so two cascades never wait on each other in a cycle.
   */
  #underRoots<T>(grants: readonly GrantRecord[], fn: () => Promise<T>): Promise<T> {
    const roots = [...new Set(grants.map((r) => r.root))].sort();
    const hold = (i: number): Promise<T> => {
      const root = roots[i];
      return root === undefined ? fn() : this.#ctx.roots.exclusive(root, () => hold(i + 1));
    };
    return hold(0);
  }

  /** The live ones among `starts` and all their descendants, each once, in walk order. */
  async #liveSubtree(starts: readonly GrantRecord[], nowMs: number): Promise<GrantRecord[]> {
    const isLive = (r: GrantRecord): boolean => r.revokedAt === null && r.exp * 1000 > nowMs;
    const seen = new Set<string>();
    const out: GrantRecord[] = [];
    for (const start of starts) {
      if (seen.has(start.grantId)) continue;
      for (const r of [start, ...(await this.descendants(start.grantId))]) {
        if (seen.has(r.grantId)) continue;
        seen.add(r.grantId);
        if (isLive(r)) out.push(r);
      }
    }
    return out;
  }

  /**
   * Revoke `ids` (those still unrevoked), write their feed events with `extra`, and journal
   * the entry `event` they owe, all in one synced write, holding each grant's own lock (a
   * redemption racing with the revocation is never overwritten); then append the entry.
   * Resolves with its seq, or null when the log did not take it (owed, retried).
   */
  async #apply(
    ids: readonly string[],
    at: string,
    extra: readonly RevocationInput[],
    event: AuditEvent,
  ): Promise<number | null> {
    const journal = this.#ctx.owed.journal(event, Date.parse(at));
    await this.#ctx.serialAll(ids, async () => {
      const marked: GrantRecord[] = [];
      for (const id of ids) {
        const current = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(id));
        if (current !== undefined && current.revokedAt === null) {
          marked.push({ ...current, revokedAt: at });
        }
      }
      const events: RevocationInput[] = [
        ...extra,
        ...marked.map((r) => ({
          kind: 'grant' as const,
          grantId: r.grantId,
          runtimeId: r.runtimeId,
          at,
          exp: r.exp,
        })),
      ];
      await this.#ctx.storeCall(() =>
        this.#ctx.revocations.apply(marked, events, { put: [journal] }),
      );
    });
    return this.#ctx.owed.settle(journal);
  }
}
