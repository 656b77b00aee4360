/**
 * When an operator withdraws trust a runtime's standing rested on (issue 18, item 2): a
 * reference policy disabled or replaced under dual control, or the EK CA bundle replaced so
 * that its EK no longer chains, the runtime's attested session ends and its live grants and
 * their descendants are revoked. Configurable (`GRANTOR_TRUST_CHANGE_CASCADE`, default on).
 *
 * Order, fail closed: the sessions end first (in memory, cannot fail: no new grant for
 * them from here on), then the grants are marked revoked, in one synced write with their
 * feed events and the journal of the one `grant.revoke` entry that names the change with
 * the counts (how many runtimes, how many grants, both sets by digest, never past the
 * entry's limits); then the entry is appended. A log that cannot record leaves the grants
 * revoked and the entry owed (`auditPending`), appended by a retry or at the next start
 * (revoke.ts, audit-pending.ts): taking trust away never waits for the log.
 */
import type { AttestationService, TrustWithdrawal } from '../attestation/index.js';
import type { GrantService } from './pipeline.js';

export interface TrustCascadeResult {
  /** The change, as the entry's subject: `refpolicy:<name>` or `ekca:sha256:<hex>`. */
  readonly subject: string;
  readonly runtimes: readonly string[];
  readonly sessionsEnded: number;
  readonly grantsRevoked: number;
  /** The `grant.revoke` entry; null when no runtime rested on what was withdrawn, or owed. */
  readonly auditSeq: number | null;
  /** The grants are revoked and their entry is owed to the log (retried). */
  readonly auditPending: boolean;
}

export interface TrustCascadeDeps {
  readonly attestation: Pick<
    AttestationService,
    'runtimesOnReferencePolicy' | 'runtimesOutsideEkCas' | 'endSessions'
  >;
  readonly grants: Pick<GrantService, 'revokeRuntimes'>;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
}

/** Who rested on the change, and how the entry names it. */
async function affected(
  change: TrustWithdrawal,
  attestation: TrustCascadeDeps['attestation'],
): Promise<{ subject: string; reason: string; runtimes: string[] }> {
  if (change.kind === 'ekca.replace') {
    return {
      subject: `ekca:sha256:${change.sha256}`,
      reason: 'cause:ekca.replace',
      runtimes: await attestation.runtimesOutsideEkCas(change.cas),
    };
  }
  return {
    subject: `refpolicy:${change.name}`,
    reason: `cause:${change.kind}`,
    runtimes: await attestation.runtimesOnReferencePolicy(change.name, change.previous),
  };
}

export class TrustCascade {
  readonly #deps: TrustCascadeDeps;
  readonly #now: () => Date;

  constructor(deps: TrustCascadeDeps) {
    this.#deps = deps;
    const now = deps.now ?? Date.now;
    this.#now = () => new Date(now());
  }

  async apply(change: TrustWithdrawal): Promise<TrustCascadeResult> {
    const { subject, reason, runtimes } = await affected(change, this.#deps.attestation);
    if (runtimes.length === 0) {
      return {
        subject,
        runtimes,
        sessionsEnded: 0,
        grantsRevoked: 0,
        auditSeq: null,
        auditPending: false,
      };
    }
    const sessionsEnded = this.#deps.attestation.endSessions(runtimes);
    const actor = `${change.actor.role}:${change.actor.id}`;
    const out = await this.#deps.grants.revokeRuntimes(
      runtimes,
      { subject, reason },
      actor,
      this.#now(),
    );
    return {
      subject,
      runtimes,
      sessionsEnded,
      grantsRevoked: out.revoked.length,
      auditSeq: out.auditSeq,
      auditPending: out.auditPending,
    };
  }
}
