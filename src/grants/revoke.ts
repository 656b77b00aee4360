/**
 * Revocation (docs/protocol.md §3): a grant with its live descendants, every live grant of
 * a runtime, or of many runtimes on a trust change; audited before the records change, each
 * record and its feed event in one synced write (revocation-feed.ts), under the lineage
 * roots' exclusive locks (root-lock.ts).
 */
import { jcs } from '../attestation/index.js';
import { fitReason } from '../audit/index.js';
import { sha256Hex, type GrantContext } from './context.js';
import { GrantNotFoundError } from './errors.js';
import type { GrantRecord } from './grant-store.port.js';
import { MAX_AUDIT_REASONS, auditText } from './reasons.js';

export interface RuntimeRevokeResult {
  readonly runtimeId: string;
  /** The runtime's live grants and their live descendants, now revoked. */
  readonly revoked: string[];
  /** The `grant.revoke` entry, or null when nothing was live (nothing to record). */
  readonly auditSeq: number | null;
}

export interface RevokeResult {
  readonly grantId: string;
  /** The grant and every descendant that was live and is now revoked. */
  readonly revoked: string[];
  readonly auditSeq: number;
}

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
      const entry = await this.#ctx.append({
        type: 'grant.revoke',
        subject: grantId,
        decision: 'revoked',
        reasons,
        digest: sha256Hex(jcs({ grantId, revoked: ids, idsDigest, actor, at })),
        facts: {
          grant: grantId,
          runtime: first.runtimeId,
          actor: auditText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      await this.#markRevoked(ids, at);
      return { grantId, revoked: ids, auditSeq: entry.seq };
    });
  }

  /**
   * Revoke every live grant of a runtime and their live descendants (the grants-side half
   * of `POST /v1/runtimes/{id}/revoke`): one `grant.revoke` entry under the runtime's id,
   * with the count and the ids' digest, before the records change. The roots involved are
   * held in sorted order, so two cascades never wait on each other in a cycle.
   */
  async revokeRuntime(runtimeId: string, actor: string, now: Date): Promise<RuntimeRevokeResult> {
    const nowMs = now.getTime();
    const own: GrantRecord[] = [];
    for (const id of await this.#ctx.storeCall(() => this.#ctx.deps.store.grantsOf(runtimeId))) {
      const r = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(id));
      if (r !== undefined && r.runtimeId === runtimeId) own.push(r);
    }
    const roots = [...new Set(own.map((r) => r.root))].sort();
    const underAll = async <T>(i: number, fn: () => Promise<T>): Promise<T> => {
      const root = roots[i];
      if (root === undefined) return fn();
      return this.#ctx.roots.exclusive(root, () => underAll(i + 1, fn));
    };
    return underAll(0, async () => {
      // Gateways learn of the runtime itself, whether or not it has a live grant.
      await this.#ctx.storeCall(() =>
        this.#ctx.revocations.apply(
          [],
          [
            {
              kind: 'runtime',
              runtimeId,
              at: now.toISOString(),
              exp: Math.floor(nowMs / 1000) + this.#ctx.config.maxTtlSeconds,
            },
          ],
        ),
      );
      const targets = await this.#liveSubtree(own, nowMs);
      const ids = targets.map((r) => r.grantId);
      if (ids.length === 0) return { runtimeId, revoked: [], auditSeq: null };
      const at = now.toISOString();
      const { reasons, idsDigest } = revokeReasons([`by:${actor}`, `runtime:${runtimeId}`], ids);
      const entry = await this.#ctx.append({
        type: 'grant.revoke',
        subject: runtimeId,
        decision: 'revoked',
        reasons,
        digest: sha256Hex(jcs({ runtimeId, revoked: ids, idsDigest, actor, at })),
        facts: {
          grant: null,
          runtime: runtimeId,
          actor: auditText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      await this.#markRevoked(ids, at);
      return { runtimeId, revoked: ids, auditSeq: entry.seq };
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
  ): Promise<{ runtimes: number; revoked: string[]; auditSeq: number }> {
    const nowMs = now.getTime();
    const runtimes = [...new Set(runtimeIds)].sort();
    const own: GrantRecord[] = [];
    for (const runtimeId of runtimes) {
      for (const id of await this.#ctx.storeCall(() => this.#ctx.deps.store.grantsOf(runtimeId))) {
        const r = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(id));
        if (r !== undefined && r.runtimeId === runtimeId) own.push(r);
      }
    }
    const roots = [...new Set(own.map((r) => r.root))].sort();
    const underAll = async <T>(i: number, fn: () => Promise<T>): Promise<T> => {
      const root = roots[i];
      if (root === undefined) return fn();
      return this.#ctx.roots.exclusive(root, () => underAll(i + 1, fn));
    };
    return underAll(0, async () => {
      const ids = (await this.#liveSubtree(own, nowMs)).map((r) => r.grantId);
      const at = now.toISOString();
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
      const entry = await this.#ctx.append({
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
          actor: auditText(actor),
          count: ids.length,
          idsDigest,
        },
      });
      await this.#markRevoked(ids, at);
      return { runtimes: runtimes.length, revoked: ids, auditSeq: entry.seq };
    });
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

  async #markRevoked(ids: readonly string[], at: string): Promise<void> {
    for (const id of ids) {
      await this.#ctx.serial(id, async () => {
        const current = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(id));
        if (current === undefined || current.revokedAt !== null) return;
        // The record and its feed event, in one synced write (revocation-feed.ts).
        await this.#ctx.storeCall(() =>
          this.#ctx.revocations.apply(
            [{ ...current, revokedAt: at }],
            [{ kind: 'grant', grantId: id, runtimeId: current.runtimeId, at, exp: current.exp }],
          ),
        );
      });
    }
  }
}
