/**
 * Redemption and outcome (docs/protocol.md §3): a gateway redeems a grant once, for its
 * audience, while nothing above it is revoked; then reports what it executed, once.
 */
import { jcs } from '../attestation/index.js';
import { AuditUnavailableError, factHex, factId, factText } from '../audit/index.js';
import { sha256Hex, type GrantContext } from './context.js';
import {
  GatewayAudienceForbiddenError,
  GrantAlreadyRedeemedError,
  GrantAudienceMismatchError,
  GrantExpiredError,
  GrantNotFoundError,
  GrantNotRedeemedError,
  GrantOutcomeForbiddenError,
  GrantOutcomeRecordedError,
  GrantRevokedError,
} from './errors.js';
import type { Execution, Redemption } from './grant-store.port.js';
import type { GrantLineage } from './lineage.js';

export type RedemptionOutcome = 'started' | 'succeeded' | 'failed';

export interface RedeemResult {
  readonly grantId: string;
  readonly redeemedAt: string;
  readonly auditSeq: number;
}

/** The enrolled gateway that calls redeem or outcome (authenticated by the routes). */
export interface RedeemingGateway {
  readonly id: string;
  readonly audiences: readonly string[];
}

export type ExecutionOutcome = Execution['outcome'];

export interface OutcomeResult {
  readonly grantId: string;
  readonly outcome: ExecutionOutcome;
  readonly recordedAt: string;
  /** The `grant.outcome` entry; null while it is owed (auditPending). */
  readonly auditSeq: number | null;
  /** The outcome is stored; its entry is not in the log yet and is retried (audit-pending.ts). */
  readonly auditPending: boolean;
}

export class GrantRedemptions {
  readonly #ctx: GrantContext;
  readonly #lineage: Pick<GrantLineage, 'ancestors' | 'revokedIn'>;

  constructor(ctx: GrantContext, lineage: Pick<GrantLineage, 'ancestors' | 'revokedIn'>) {
    this.#ctx = ctx;
    this.#lineage = lineage;
  }

  // ---------------------------------------------------------------------------------------
  // POST /v1/grants/{grantId}/redeem

  /**
   * Single use: the first call wins (serialised per grant; the redemption is persisted with
   * the journal of its entry before the entry is appended, so a crash or a log failure in
   * between leaves the grant used, never reusable, and its entry owed, audit-pending.ts).
   */
  async redeem(
    grantId: string,
    body: { audience: string; outcome?: RedemptionOutcome },
    now: Date,
    gateway: RedeemingGateway,
  ): Promise<RedeemResult> {
    const { audience } = body;
    const outcome = body.outcome ?? null;
    // Before the grant is read: a gateway learns nothing about grants of other audiences.
    if (!gateway.audiences.includes(audience)) throw new GatewayAudienceForbiddenError();
    return this.#ctx.serial(grantId, async () => {
      const record = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(grantId));
      if (record === undefined) throw new GrantNotFoundError();
      if (record.audience !== audience) throw new GrantAudienceMismatchError();
      if (record.redemption !== null) throw new GrantAlreadyRedeemedError();
      if (record.revokedAt !== null) throw new GrantRevokedError();
      if (record.exp * 1000 <= now.getTime()) throw new GrantExpiredError();
      // Not only the grant: any grant above it, or the runtime of any of them, revoked.
      if (await this.#lineage.revokedIn([record, ...(await this.#lineage.ancestors(record))])) {
        throw new GrantRevokedError('a grant above it, or its runtime, was revoked');
      }
      const redemption: Redemption = {
        at: now.toISOString(),
        audience,
        outcome,
        gateway: gateway.id,
      };
      const journal = this.#ctx.owed.journal(
        {
          type: 'grant.redeem',
          subject: grantId,
          decision: 'redeemed',
          reasons: [`gateway:${gateway.id}`, ...(outcome === null ? [] : [outcome])],
          digest: sha256Hex(
            jcs({ grantId, audience, outcome, gateway: gateway.id, at: redemption.at }),
          ),
          facts: {
            grant: grantId,
            runtime: factId(record.runtimeId),
            gateway: factText(gateway.id),
            outcome,
          },
        },
        now.getTime(),
      );
      // The redemption and the entry it owes in one write, then the entry. A log that fails
      // answers 503 (the gateway must not execute without the evidence) while the grant
      // stays used and its entry owed: written once when the log works again.
      await this.#ctx.storeCall(() =>
        this.#ctx.deps.store.update([{ ...record, redemption }], [], { put: [journal] }),
      );
      const seq = await this.#ctx.owed.settle(journal);
      if (seq === null) {
        throw new AuditUnavailableError(
          'the audit log did not record the redemption: do not execute; the grant is used and its entry owed',
        );
      }
      return { grantId, redeemedAt: redemption.at, auditSeq: seq };
    });
  }

  // ---------------------------------------------------------------------------------------
  // POST /v1/grants/{grantId}/outcome

  /**
   * What the redeeming gateway executed: once per grant, by that gateway only, with one
   * `grant.outcome` entry: the outcome is stored with the journal of its entry, then the
   * entry is appended (audit-pending.ts). A store failure records neither (the gateway may
   * report again); a log failure leaves the entry owed (`auditPending`), never doubled.
   */
  async outcome(
    grantId: string,
    body: { outcome: ExecutionOutcome; resultDigest?: string },
    now: Date,
    gateway: RedeemingGateway,
  ): Promise<OutcomeResult> {
    return this.#ctx.serial(grantId, async () => {
      const record = await this.#ctx.storeCall(() => this.#ctx.deps.store.get(grantId));
      if (record === undefined) throw new GrantNotFoundError();
      if (record.redemption === null) throw new GrantNotRedeemedError();
      // Redemptions from before gateways were enrolled name none: nobody reports for them.
      if (record.redemption.gateway !== gateway.id) throw new GrantOutcomeForbiddenError();
      if (record.execution !== undefined) throw new GrantOutcomeRecordedError();
      const execution: Execution = {
        at: now.toISOString(),
        gateway: gateway.id,
        outcome: body.outcome,
        ...(body.resultDigest === undefined ? {} : { resultDigest: body.resultDigest }),
      };
      const journal = this.#ctx.owed.journal(
        {
          type: 'grant.outcome',
          subject: grantId,
          decision: body.outcome,
          reasons: [
            `gateway:${gateway.id}`,
            ...(body.resultDigest === undefined ? [] : [`result:${body.resultDigest}`]),
          ],
          digest: sha256Hex(jcs({ grantId, ...execution })),
          facts: {
            grant: factId(grantId),
            runtime: factId(record.runtimeId),
            gateway: factId(gateway.id),
            outcome: body.outcome,
            resultDigest: factHex(body.resultDigest),
          },
        },
        now.getTime(),
      );
      // The outcome and the entry it owes in one write, then the entry: a store that fails
      // leaves neither (the gateway reports again), a log that fails leaves the entry owed,
      // and no retry of either ever writes a second entry.
      await this.#ctx.storeCall(() =>
        this.#ctx.deps.store.update([{ ...record, execution }], [], { put: [journal] }),
      );
      const seq = await this.#ctx.owed.settle(journal);
      return {
        grantId,
        outcome: body.outcome,
        recordedAt: execution.at,
        auditSeq: seq,
        auditPending: seq === null,
      };
    });
  }
}
