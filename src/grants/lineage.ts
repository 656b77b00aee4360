/**
 * Lineage: where a child grant hangs in its tree (docs/protocol.md §3). A child is checked
 * against its whole chain up to the root (every link consistent, nothing revoked above it),
 * the depth and width bounds, and is counted under its parent while in flight; the lineage
 * route shows a grant with its ancestors and descendants.
 */
import { GrantorError, UnavailableError } from '../shared/errors.js';
import { iso, unavailable, type GrantContext } from './context.js';
import {
  GrantDepthExceededError,
  GrantLineageInvalidError,
  GrantNotFoundError,
  GrantParentExpiredError,
  GrantParentNotFoundError,
  GrantParentRevokedError,
  GrantStoreUnavailableError,
  GrantWidthExceededError,
} from './errors.js';
import type { Execution, GrantRecord } from './grant-store.port.js';
import type { CheckedRequest } from './request.js';
import type { GrantRevoker } from './revoke.js';

export interface GrantView {
  readonly grantId: string;
  readonly runtimeId: string;
  readonly action: string;
  readonly resource: string;
  readonly audience: string;
  readonly parent: string | null;
  readonly root: string;
  readonly depth: number;
  readonly issuedAt: string;
  readonly expiresAt: string;
  readonly state: 'live' | 'expired' | 'revoked' | 'redeemed';
  /** The gateway that redeemed it (issue 18), when one did. */
  readonly redeemedBy?: string;
  /** What that gateway reported after executing, once reported. */
  readonly execution?: Execution;
}

export interface Lineage {
  readonly grant: GrantView;
  /** From the parent up to the root. */
  readonly ancestors: GrantView[];
  /** Breadth-first, nearest first. */
  readonly descendants: GrantView[];
}

export interface ParentLink {
  readonly parent: GrantRecord;
  readonly depth: number;
  readonly delegated: boolean;
}

export class GrantLineage {
  readonly #ctx: GrantContext;
  readonly #revoker: Pick<GrantRevoker, 'descendants'>;
  /** Children past the width check and not yet settled, per parent. */
  readonly #pendingChildren = new Map<string, number>();

  constructor(ctx: GrantContext, revoker: Pick<GrantRevoker, 'descendants'>) {
    this.#ctx = ctx;
    this.#revoker = revoker;
  }

  /** A child's place under its parent is held from the width check until it settles. */
  childSettled(parentId: string): void {
    const n = (this.#pendingChildren.get(parentId) ?? 1) - 1;
    if (n <= 0) this.#pendingChildren.delete(parentId);
    else this.#pendingChildren.set(parentId, n);
  }

  /** The root of the requested parent's tree (undefined: no parent, or none stored). */
  async parentRoot(req: CheckedRequest): Promise<string | undefined> {
    const parentId = req.parentGrantId;
    if (parentId === null) return undefined;
    return (await this.#ctx.storeCall(() => this.#ctx.deps.store.get(parentId)))?.root;
  }

  /**
   * The chain above a grant, parent first, up to its root; every link must agree (same
   * root, depth one less, depth 0 only at the root). Throws GrantLineageInvalidError.
   */
  async ancestors(record: GrantRecord): Promise<GrantRecord[]> {
    const chain: GrantRecord[] = [];
    let node = record;
    while (node.parent !== null) {
      const parentId = node.parent;
      // Depth strictly falls to 0 at the root: a damaged store cannot make this loop.
      if (node.depth <= 0) throw new GrantLineageInvalidError();
      const above = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(parentId));
      if (above?.root !== node.root || above.depth + 1 !== node.depth) {
        throw new GrantLineageInvalidError();
      }
      chain.push(above);
      node = above;
    }
    if (node.root !== node.grantId || node.depth !== 0) throw new GrantLineageInvalidError();
    return chain;
  }

  /**
   * Whether any of `records` is revoked, or was issued to a runtime that has since been
   * revoked (a runtime revoke whose cascade failed, or a grant stored after it ran).
   */
  async revokedIn(records: readonly GrantRecord[]): Promise<boolean> {
    if (records.some((r) => r.revokedAt !== null)) return true;
    for (const runtimeId of new Set(records.map((r) => r.runtimeId))) {
      try {
        const runtime = await this.#ctx.deps.attestation.getRuntime(runtimeId);
        if (runtime.state === 'revoked') return true;
      } catch (e) {
        // A runtime the appliance no longer knows vouches for nothing; a store failure is
        // an unavailable dependency, not an answer.
        if (e instanceof GrantorError && !(e instanceof UnavailableError)) return true;
        throw unavailable(e, (cause) => new GrantStoreUnavailableError({ cause }));
      }
    }
    return false;
  }

  /** The requested parent checked, and the child's place under it held (`childSettled`). */
  async link(req: CheckedRequest, nowMs: number): Promise<ParentLink | undefined> {
    if (req.parentGrantId === null) return undefined;
    const parentId = req.parentGrantId;
    const parent = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(parentId));
    if (parent === undefined) throw new GrantParentNotFoundError();
    if (parent.exp * 1000 <= nowMs) throw new GrantParentExpiredError();
    if (parent.revokedAt !== null) throw new GrantParentRevokedError();
    // Every link up to the root must agree, and no ancestor (nor its runtime) be revoked:
    // a cascade cut short (a crash, a failed write) must not leave a branch usable.
    const chain = [parent, ...(await this.ancestors(parent))];
    if (await this.revokedIn(chain)) {
      throw new GrantParentRevokedError('a grant above the parent, or its runtime, was revoked');
    }
    const depth = parent.depth + 1;
    const { maxDepth, maxChildren } = this.#ctx.config;
    if (depth > maxDepth) {
      throw new GrantDepthExceededError(undefined, { details: { maxDepth } });
    }
    // Width: the stored children and those in flight, checked and counted in one step.
    const stored = (await this.#ctx.storeCall(() => this.#ctx.deps.store.children(parentId)))
      .length;
    const pending = this.#pendingChildren.get(parentId) ?? 0;
    if (stored + pending >= maxChildren) {
      throw new GrantWidthExceededError(undefined, { details: { maxChildren } });
    }
    this.#pendingChildren.set(parentId, pending + 1);
    // Delegation to another runtime is the policy's call (context.lineage.delegated).
    return { parent, depth, delegated: parent.runtimeId !== req.runtimeId };
  }

  // ---------------------------------------------------------------------------------------
  // GET /v1/grants/{grantId}/lineage

  #view(r: GrantRecord, nowMs: number): GrantView {
    const state =
      r.revokedAt !== null
        ? 'revoked'
        : r.redemption !== null
          ? 'redeemed'
          : r.exp * 1000 <= nowMs
            ? 'expired'
            : 'live';
    return {
      grantId: r.grantId,
      runtimeId: r.runtimeId,
      action: r.action,
      resource: r.resource,
      audience: r.audience,
      parent: r.parent,
      root: r.root,
      depth: r.depth,
      issuedAt: iso(r.iat),
      expiresAt: iso(r.exp),
      state,
      ...(r.redemption?.gateway === undefined ? {} : { redeemedBy: r.redemption.gateway }),
      ...(r.execution === undefined ? {} : { execution: r.execution }),
    };
  }

  async lineage(grantId: string, now: Date): Promise<Lineage> {
    const nowMs = now.getTime();
    const store = this.#ctx.deps.store;
    const record = await this.#ctx.storeCall(() => store.get(grantId));
    if (record === undefined) throw new GrantNotFoundError();
    const ancestors: GrantView[] = [];
    let parentId = record.parent;
    const seen = new Set<string>([grantId]);
    while (parentId !== null && !seen.has(parentId)) {
      seen.add(parentId);
      const id = parentId;
      const p = await this.#ctx.storeCall(() => store.get(id));
      if (p === undefined) break;
      ancestors.push(this.#view(p, nowMs));
      parentId = p.parent;
    }
    const descendants = (await this.#revoker.descendants(grantId)).map((r) => this.#view(r, nowMs));
    return { grant: this.#view(record, nowMs), ancestors, descendants };
  }
}
