/**
 * Freshness and replay of a grant request (docs/protocol.md §3): issuedAt within the skew
 * and a requestId never used by its runtime. Checked before the proof, reserving nothing,
 * and again after it, reserving the id (replay.ts keeps the ids).
 */
import type { GrantContext } from './context.js';
import { RequestReplayedError, RequestStaleError } from './errors.js';
import type { ReplayGuard } from './replay.js';
import type { CheckedRequest } from './request.js';

export class Freshness {
  readonly #ctx: GrantContext;
  readonly #replay: ReplayGuard;

  constructor(ctx: GrantContext, replay: ReplayGuard) {
    this.#ctx = ctx;
    this.#replay = replay;
  }

  /**
   * requestId not seen in memory, issuedAt within the skew, and the memory loaded (the
   * first request after a start loads the store's live ids).
   */
  async #inWindow(req: CheckedRequest, nowMs: number): Promise<void> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    if (replay.seen(runtimeId, requestId, nowMs)) throw new RequestReplayedError();
    if (Math.abs(nowMs - req.issuedAtMs) > this.#ctx.config.clockSkewSeconds * 1000) {
      throw new RequestStaleError();
    }
    const loading = replay.ready(nowMs);
    if (loading === undefined) return;
    await this.#ctx.storeCall(() => loading);
    // A twin may have reserved the id while this one waited.
    if (replay.seen(runtimeId, requestId, nowMs)) throw new RequestReplayedError();
  }

  /**
   * The freshness and replay checks of `fresh`, run before the proof and reserving
   * nothing: an unproven request never holds an id (a forged copy cannot burn a real
   * request's id), and `fresh` checks again and reserves once the proof has passed.
   */
  async unused(req: CheckedRequest, nowMs: number): Promise<void> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    await this.#inWindow(req, nowMs);
    const used = replay.usedInMemory(runtimeId, requestId, nowMs);
    const known = used ?? (await this.#ctx.storeCall(() => replay.persisted(runtimeId, requestId)));
    if (known) throw new RequestReplayedError();
  }

  /**
   * requestId not seen for this runtime, issuedAt within the skew; then the id is used:
   * reserved in memory at once. It is written with the answer that uses it (the grant's
   * own write, or after a deny's audit entry); a request that fails before that keeps its
   * id reserved in memory only, having released nothing. Returns the id's expiry.
   */
  async fresh(req: CheckedRequest, nowMs: number): Promise<number> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    await this.#inWindow(req, nowMs);
    // Checked and reserved in one synchronous step: a concurrent twin sees the reservation.
    const used = replay.usedInMemory(runtimeId, requestId, nowMs);
    if (used === true) throw new RequestReplayedError();
    const keepUntil = req.issuedAtMs + this.#ctx.config.clockSkewSeconds * 1000;
    replay.reserve(runtimeId, requestId, keepUntil, nowMs);
    if (used === undefined) {
      let known: boolean;
      try {
        known = await this.#ctx.storeCall(() => replay.persisted(runtimeId, requestId));
      } catch (e) {
        replay.settled(runtimeId, requestId);
        throw e;
      }
      if (known) {
        // Written long ago: the reservation has nothing left to wait for.
        replay.settled(runtimeId, requestId);
        throw new RequestReplayedError();
      }
    }
    return keepUntil;
  }
}
