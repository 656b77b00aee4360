/**
 * The grant request path (docs/protocol.md §3), default deny, each step its own error, each
 * in its own room:
 *
 *   schema (request.ts) -> runtime active -> freshness (freshness.ts) -> proof (proof.ts)
 *   -> lineage (lineage.ts) -> policy -> audit entry (durable, anchored) -> HSM signature
 *   (typed claims, src/shared/grant-claims.ts) -> store
 *
 * Freshness comes before the proof, which may spend state (a quote's nonce, the runtime's
 * counters, its session): a stale or replayed request changes nothing.
 *
 * Nothing is signed before its audit entry is committed, and an "allow" whose grant is
 * not returned (signing or storing failed) is followed by a `grant.issue_failed` entry.
 * `GrantService` is the domain's one face: redemption (redeem.ts), the lineage view
 * (lineage.ts) and revocation (revoke.ts) are its other rooms.
 */
import { pooledRandomBytes } from '../shared/random-pool.js';
import type { GrantDecisionFacts } from '../audit/index.js';
import { MAX_BODY_LENGTH, factId, factList, factText } from '../audit/index.js';
import { HsmUnavailableError } from '../keys/index.js';
import type { PolicyDecision, PolicyRequest } from '../policy/index.js';
import { PolicyUnavailableError, grantTtlSeconds } from '../policy/index.js';
import { GrantorError, UnavailableError, type ErrorCode } from '../shared/errors.js';
import { PolicyDeniedError, RuntimeNotActiveError } from './errors.js';
import type { GrantRecord, UsedRequest } from './grant-store.port.js';
import { ReplayGuard } from './replay.js';
import { checkRequest, unsignedRequestText, type CheckedRequest } from './request.js';
import { policyRequestFor } from './cedar-context.js';
import { GrantRefusalWindow } from './refusals.js';
import type { RevocationFeed } from './revocation-feed.js';
import { RevocationSnapshots } from './revocation-snapshot.js';
import {
  GrantContext,
  iso,
  sha256Hex,
  unavailable,
  type GrantsConfig,
  type GrantsDeps,
} from './context.js';
import type { GrantClaims } from '../shared/grant-claims.js';
import { Freshness } from './freshness.js';
import { GrantLineage, type Lineage, type ParentLink } from './lineage.js';
import { RequestProver, type Proven } from './proof.js';
import {
  GrantRedemptions,
  type ExecutionOutcome,
  type OutcomeResult,
  type RedeemResult,
  type RedeemingGateway,
  type RedemptionOutcome,
} from './redeem.js';
import { auditReasons } from './reasons.js';
import {
  GrantRevoker,
  type RevokeResult,
  type RuntimeRevokeResult,
  type RuntimesRevokeResult,
} from './revoke.js';

export type { GrantsConfig, GrantsDeps } from './context.js';
export { jwkThumbprint } from '../shared/grant-claims.js';
export type { GrantView, Lineage } from './lineage.js';
export type {
  ExecutionOutcome,
  OutcomeResult,
  RedeemResult,
  RedeemingGateway,
  RedemptionOutcome,
} from './redeem.js';
export type { RevokeResult, RuntimeRevokeResult, RuntimesRevokeResult } from './revoke.js';
export { policyReason } from './reasons.js';
export { revokeReasons } from './revoke.js';

export interface IssuedGrant {
  readonly grantId: string;
  /** JWS compact. */
  readonly grant: string;
  /** RFC 3339. */
  readonly expiresAt: string;
  readonly auditSeq: number;
}

export class GrantService {
  readonly #ctx: GrantContext;
  readonly #config: GrantsConfig;
  readonly #deps: GrantsDeps;
  readonly #random: (n: number) => Buffer;
  readonly #replay: ReplayGuard;
  readonly #freshness: Freshness;
  readonly #prover: RequestProver;
  readonly #lineage: GrantLineage;
  readonly #redemptions: GrantRedemptions;
  readonly #revoker: GrantRevoker;
  #gate: Promise<void> | undefined;
  readonly #refusals: GrantRefusalWindow;
  /** Every revocation applied, sequenced, for gateways (docs/protocol.md §3.1). */
  readonly revocations: RevocationFeed;
  /** The signed list of what is revoked now (same section). */
  readonly snapshots: RevocationSnapshots;

  constructor(config: GrantsConfig, deps: GrantsDeps) {
    this.#ctx = new GrantContext(config, deps);
    this.#config = config;
    this.#deps = deps;
    this.revocations = this.#ctx.revocations;
    const { signJws } = deps.keys;
    this.snapshots = new RevocationSnapshots(
      this.revocations,
      signJws === undefined ? undefined : { signJws: (h, p) => signJws.call(deps.keys, h, p) },
      {
        issuer: config.issuer,
        ...(config.revocationSnapshotTtlSeconds === undefined
          ? {}
          : { ttlSeconds: config.revocationSnapshotTtlSeconds }),
      },
    );
    // Grant ids from a pooled CSPRNG: randomBytes per grant was ~1% of the event loop.
    this.#random = deps.random ?? pooledRandomBytes;
    this.#refusals = new GrantRefusalWindow(config.refusals ?? { windowSeconds: 60 });
    this.#replay = new ReplayGuard(deps.store, config.replayCacheSize, {
      skewMs: config.clockSkewSeconds * 1000,
      // The pruner's grace (index.ts): one more skew window for a clock stepped back.
      graceMs: config.clockSkewSeconds * 1000,
    });
    this.#freshness = new Freshness(this.#ctx, this.#replay);
    this.#prover = new RequestProver(deps.attestation);
    this.#revoker = new GrantRevoker(this.#ctx);
    this.#lineage = new GrantLineage(this.#ctx, this.#revoker);
    this.#redemptions = new GrantRedemptions(this.#ctx, this.#lineage);
  }

  // ---------------------------------------------------------------------------------------
  // POST /v1/grants

  /**
   * Holds every decision until `work` settles (the start-up marking of unreleased allows,
   * unreleased.ts, which must not see a request of this process half done). A failure of
   * `work` is the caller's to report; decisions then go ahead.
   */
  holdDecisionsUntil(work: Promise<unknown>): void {
    const gate = work.then(
      () => undefined,
      () => undefined,
    );
    this.#gate = gate;
    void gate.then(() => {
      if (this.#gate === gate) this.#gate = undefined;
    });
  }

  /** Decide, record, sign and store one grant request. `now` is the decision time. */
  async request(untrusted: unknown, now: Date): Promise<IssuedGrant> {
    // Copied and checked before the first await: the caller's object cannot change it.
    const req = checkRequest(untrusted, this.#config.maxTtlSeconds);
    try {
      return await this.#request(req, now);
    } catch (e) {
      // Every refusal after the body parsed is on the record (a deny is already, and an
      // unavailable dependency refused nothing: it failed closed).
      if (
        e instanceof GrantorError &&
        !(e instanceof PolicyDeniedError) &&
        !(e instanceof UnavailableError)
      ) {
        await this.#recordRefusal(req, e.code, now.getTime());
      }
      throw e;
    }
  }

  /**
   * One `grant.refused` entry per (claimed runtime, code) and window, with counts
   * (refusals.ts). Best effort: the refusal's own answer stands when the log cannot record
   * within the dependency deadline (what it would have held is counted as dropped on the
   * next refusal entry); a stuck log never holds the answer.
   */
  async #recordRefusal(req: CheckedRequest, code: ErrorCode, nowMs: number): Promise<void> {
    const runtime = factId(req.runtimeId);
    const admission = this.#refusals.admit(runtime, code, nowMs);
    if (!admission.write) return;
    const body = unsignedRequestText(req.body);
    try {
      await this.#ctx.append({
        type: 'grant.refused',
        subject: runtime,
        decision: code,
        digest: sha256Hex(body),
        facts: {
          runtime,
          code,
          requestId: factText(req.requestId),
          repeats: admission.repeats,
          dropped: admission.dropped,
        },
        ...(body.length <= MAX_BODY_LENGTH ? { body } : {}),
      });
    } catch {
      this.#refusals.unwritten(1 + admission.repeats + admission.dropped);
    }
  }

  async #request(req: CheckedRequest, now: Date): Promise<IssuedGrant> {
    const nowMs = now.getTime();
    if (this.#gate !== undefined) {
      await this.#ctx.deadline('startup', this.#gate);
    }

    const runtime = await this.#deps.attestation.getRuntime(req.runtimeId);
    if (runtime.state !== 'active') throw new RuntimeNotActiveError();

    // Before the proof, which may spend state (a quote's nonce, the runtime's counters, its
    // session): a stale or replayed request changes nothing.
    await this.#freshness.unused(req, nowMs);
    const proven = await this.#prover.prove(req, runtime, nowMs);
    const idExpiresAt = await this.#freshness.fresh(req, nowMs);
    const used = { runtimeId: req.runtimeId, requestId: req.requestId, expiresAt: idExpiresAt };
    try {
      const run = () => this.#decideAndIssue(req, proven, used, nowMs);
      // A child is checked and stored while no revoke of its tree runs (root-lock.ts).
      const root = await this.#lineage.parentRoot(req);
      const issued = root === undefined ? await run() : await this.#ctx.roots.shared(root, run);
      // Its id was written with the grant.
      this.#replay.settled(used.runtimeId, used.requestId);
      return issued;
    } catch (e) {
      // A failed request (a deny has written its id already) keeps its id used across a
      // graceful restart too; unsynced and not awaited: it released nothing.
      if (!(e instanceof PolicyDeniedError)) {
        this.#replay.persist(used.runtimeId, used.requestId, used.expiresAt).catch(() => undefined);
      }
      throw e;
    }
  }

  /** From lineage to the stored grant: every step after the freshness check. */
  async #decideAndIssue(
    req: CheckedRequest,
    proven: Proven,
    used: UsedRequest,
    nowMs: number,
  ): Promise<IssuedGrant> {
    const link = await this.#lineage.link(req, nowMs);
    try {
      return await this.#issue(req, proven, used, nowMs, link);
    } finally {
      if (link !== undefined) this.#lineage.childSettled(link.parent.grantId);
    }
  }

  /** From the policy decision to the stored grant. */
  async #issue(
    req: CheckedRequest,
    proven: Proven,
    used: UsedRequest,
    nowMs: number,
    link: ParentLink | undefined,
  ): Promise<IssuedGrant> {
    const grantId = `gr_${this.#random(16).toString('base64url')}`;
    const policyRequest = await policyRequestFor(
      { req, runtime: proven.runtime, proof: proven, link },
      { attestation: this.#deps.attestation, gateways: this.#deps.gateways },
    );
    const decision = await this.#decide(policyRequest);

    // requestDigest's value, without canonicalising the request again (session mode: the
    // proof's signed bytes are this text).
    const bodyText = proven.unsignedText ?? unsignedRequestText(req.body);
    const digest = sha256Hex(bodyText);
    // The request the decision was made on, kept by its digest with the entry.
    const body = bodyText.length <= MAX_BODY_LENGTH ? { body: bodyText } : {};
    const facts = (matched: readonly string[], exp: number | null): GrantDecisionFacts => ({
      // Facts are bounded names: whatever the request wrote is made one (never refused).
      runtime: factId(req.runtimeId),
      action: factText(req.action),
      resource: factText(req.resource),
      audience: factText(req.audience),
      parent: req.parentGrantId === null ? null : factId(req.parentGrantId),
      requestId: factText(req.requestId),
      parametersDigest: req.parametersDigest,
      proofMode: req.proof.mode,
      attestationId: proven.attestationId === null ? null : factId(proven.attestationId),
      policyHash: decision.policyHash,
      matchedPolicies: factList(matched),
      keyId: exp === null ? null : this.#activeKid(),
      expiresAt: exp === null ? null : iso(exp),
    });
    // Allow-only: anything but an explicit "allow" (a new kind, a damaged answer) denies.
    if (decision.decision !== 'allow') {
      const entry = await this.#ctx.append({
        type: 'grant.decision',
        subject: grantId,
        decision: 'deny',
        reasons: auditReasons(decision.policyHash, decision.reasons),
        digest,
        facts: facts(decision.determiningPolicies, null),
        ...body,
      });
      await this.#ctx.storeCall(() =>
        this.#replay.persist(used.runtimeId, used.requestId, used.expiresAt),
      );
      throw new PolicyDeniedError(decision.reasons, {
        decisionId: grantId,
        auditSeq: entry.seq,
        policy: decision.policyHash,
      });
    }

    const iat = Math.floor(nowMs / 1000);
    let exp = iat + grantTtlSeconds(req.ttlSeconds, decision.obligations);
    // A child never outlives its parent.
    if (link !== undefined) exp = Math.min(exp, link.parent.exp);

    const allowFacts = facts(decision.determiningPolicies, exp);
    const entry = await this.#ctx.append({
      type: 'grant.decision',
      subject: grantId,
      decision: 'allow',
      reasons: auditReasons(decision.policyHash, decision.determiningPolicies),
      digest,
      facts: allowFacts,
      ...body,
    });

    // From here on an "allow" is committed: a grant that is not returned is marked.
    try {
      const root = link === undefined ? grantId : link.parent.root;
      const claims: GrantClaims = {
        iss: this.#config.issuer,
        sub: req.runtimeId,
        aud: req.audience,
        iat,
        nbf: iat,
        exp,
        jti: grantId,
        act: {
          action: req.action,
          resource: req.resource,
          parametersDigest: req.parametersDigest,
        },
        att: {
          akName: proven.akName,
          pcrDigest: proven.pcrDigest,
          resetCount: proven.resetCount,
          restartCount: proven.restartCount,
          attestationId: proven.attestationId,
        },
        cnf: { jkt: proven.jkt },
        lin: { parent: link?.parent.grantId ?? null, root, depth: link?.depth ?? 0 },
        pol: decision.policyHash,
        aud_seq: entry.seq,
        aud_hash: entry.hash,
      };
      const grant = await this.#sign(claims);
      const record: GrantRecord = {
        grantId,
        runtimeId: req.runtimeId,
        action: req.action,
        resource: req.resource,
        audience: req.audience,
        parent: link?.parent.grantId ?? null,
        root,
        depth: link?.depth ?? 0,
        iat,
        exp,
        auditSeq: entry.seq,
        revokedAt: null,
        redemption: null,
      };
      await this.#ctx.storeCall(() => this.#deps.store.create(record, used));
      return { grantId, grant, expiresAt: iso(exp), auditSeq: entry.seq };
    } catch (e) {
      const code = e instanceof GrantorError ? e.code : 'internal_error';
      // Best effort: when the log itself is down this fails too, and the answer is 503 anyway.
      await this.#ctx
        .append({
          type: 'grant.issue_failed',
          subject: grantId,
          decision: 'failed',
          reasons: [code],
          digest,
          facts: allowFacts,
        })
        .catch(() => undefined);
      throw e;
    }
  }

  /** The grant key that will sign (recorded with an allow); null when it cannot be told. */
  #activeKid(): string | null {
    try {
      const kid = this.#deps.keys.activeGrantKid?.();
      return kid === undefined ? null : factId(kid);
    } catch {
      return null;
    }
  }

  async #decide(request: PolicyRequest): Promise<PolicyDecision> {
    try {
      // The decider's own deadline guards its workers; this one is the request's.
      return await this.#ctx.deadline('policy', Promise.resolve(this.#deps.policy.decide(request)));
    } catch (e) {
      if (e instanceof GrantorError && !(e instanceof UnavailableError)) throw e;
      throw unavailable(
        e,
        (cause) => new PolicyUnavailableError('the policy engine failed', { cause }),
      );
    }
  }

  async #sign(claims: GrantClaims): Promise<string> {
    try {
      // The keys service owns the signature's form (low-S, src/shared/es256.ts); its own
      // deadline guards its sessions, this one is the request's.
      const { token } = await this.#ctx.deadline(
        'hsm',
        this.#deps.keys.signGrantToken({ typ: 'grant+jwt' }, claims),
      );
      return token;
    } catch (e) {
      throw unavailable(
        e,
        (cause) => new HsmUnavailableError('the grant could not be signed', { cause }),
      );
    }
  }

  // ---------------------------------------------------------------------------------------
  // The other rooms, behind the domain's one face.

  /** POST /v1/grants/{grantId}/redeem (redeem.ts). */
  redeem(
    grantId: string,
    body: { audience: string; outcome?: RedemptionOutcome },
    now: Date,
    gateway: RedeemingGateway,
  ): Promise<RedeemResult> {
    return this.#redemptions.redeem(grantId, body, now, gateway);
  }

  /** POST /v1/grants/{grantId}/outcome (redeem.ts). */
  outcome(
    grantId: string,
    body: { outcome: ExecutionOutcome; resultDigest?: string },
    now: Date,
    gateway: RedeemingGateway,
  ): Promise<OutcomeResult> {
    return this.#redemptions.outcome(grantId, body, now, gateway);
  }

  /** GET /v1/grants/{grantId}/lineage (lineage.ts). */
  lineage(grantId: string, now: Date): Promise<Lineage> {
    return this.#lineage.lineage(grantId, now);
  }

  /**
   * Appends the audit entries a previous process owed (audit-pending.ts) and retries them
   * while this one runs; resolves after the first pass, with how many there were.
   */
  resumeOwedAudits(): Promise<number> {
    return this.#ctx.owed.resume();
  }

  /** Stops retrying owed entries (closing); they stay journaled for the next start. */
  stopAuditRetries(): void {
    this.#ctx.owed.stop();
  }

  /** Audit entries owed now for revocations and outcomes already applied. */
  get auditOwed(): number {
    return this.#ctx.owed.owed;
  }

  /** POST /v1/grants/{grantId}/revoke (revoke.ts). */
  revoke(grantId: string, actor: string, now: Date): Promise<RevokeResult> {
    return this.#revoker.revoke(grantId, actor, now);
  }

  /** The grants-side half of POST /v1/runtimes/{id}/revoke (revoke.ts). */
  revokeRuntime(runtimeId: string, actor: string, now: Date): Promise<RuntimeRevokeResult> {
    return this.#revoker.revokeRuntime(runtimeId, actor, now);
  }

  /** A trust change's cascade (trust-cascade.ts, revoke.ts). */
  revokeRuntimes(
    runtimeIds: readonly string[],
    cause: { readonly subject: string; readonly reason: string },
    actor: string,
    now: Date,
  ): Promise<RuntimesRevokeResult> {
    return this.#revoker.revokeRuntimes(runtimeIds, cause, actor, now);
  }
}
