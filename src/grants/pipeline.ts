/**
 * The grant decision pipeline (PROTOCOL.md §3), default deny, each step its own error:
 *
 *   schema -> runtime active -> freshness (requestId, issuedAt) -> proof (session
 *   signature or quote) -> lineage -> policy -> audit entry (durable, anchored)
 *   -> HSM signature -> store
 *
 * Freshness comes before the proof, which may spend state (a quote's nonce, the runtime's
 * counters, its session): a stale or replayed request changes nothing.
 *
 * Nothing is signed before its audit entry is committed, and an "allow" whose grant is
 * not returned (signing or storing failed) is followed by a `grant.issue_failed` entry.
 * Redemption is single-use (serialised per grant, persisted); revoking a grant revokes its
 * live descendants.
 */
import { toLowS } from '../shared/es256.js';
import { pooledRandomBytes } from '../shared/random-pool.js';
import {
  createHash,
  createPublicKey,
  verify as verifySignature,
  type KeyObject,
} from 'node:crypto';
import {
  jcs,
  qualifyingData,
  type AttestationService,
  type EcSessionJwk,
} from '../attestation/index.js';
import type { AuditService, GrantDecisionFacts } from '../audit/index.js';
import { AuditUnavailableError, MAX_BODY_LENGTH, fitReason } from '../audit/index.js';
import { factHex, factId } from '../audit/index.js';
import type { KeyService } from '../keys/index.js';
import { HsmUnavailableError } from '../keys/index.js';
import type { PolicyDecider, PolicyDecision, PolicyRequest } from '../policy/index.js';
import { PolicyUnavailableError, grantTtlSeconds } from '../policy/index.js';
import { GrantorError, UnavailableError } from '../shared/errors.js';
import {
  GrantAlreadyRedeemedError,
  GrantAudienceMismatchError,
  GrantDepthExceededError,
  GrantWidthExceededError,
  GrantExpiredError,
  GrantLineageInvalidError,
  GrantNotFoundError,
  GrantParentExpiredError,
  GrantParentNotFoundError,
  GrantParentRevokedError,
  GrantRevokedError,
  GrantStoreUnavailableError,
  PolicyDeniedError,
  RequestReplayedError,
  RequestSignatureInvalidError,
  RequestStaleError,
  RuntimeNotActiveError,
  SessionNotLiveError,
  SessionRuntimeMismatchError,
} from './errors.js';
import {
  GatewayAudienceForbiddenError,
  GrantNotRedeemedError,
  GrantOutcomeForbiddenError,
  GrantOutcomeRecordedError,
} from './errors.js';
import type {
  Execution,
  GrantRecord,
  GrantStore,
  Redemption,
  UsedRequest,
} from './grant-store.port.js';
import { ReplayGuard } from './replay.js';
import {
  checkRequest,
  sessionSigningInput,
  unsignedRequestText,
  withoutQuote,
  type CheckedRequest,
} from './request.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { RootLocks } from './root-lock.js';
import { policyRequestFor, type AudienceGateways } from './cedar-context.js';
import { GrantRefusalWindow, type RefusalWindowOptions } from './refusals.js';
import { RevocationFeed, type RevocationFeedSettings } from './revocation-feed.js';
import { RevocationSnapshots } from './revocation-snapshot.js';

export interface GrantsConfig {
  /** The appliance id: the grants' `iss`. */
  readonly issuer: string;
  /** Appliance-wide bound on ttlSeconds (policy may cap lower). Must not exceed the keys' bound. */
  readonly maxTtlSeconds: number;
  /** Allowed distance of issuedAt from the appliance clock, both ways. */
  readonly clockSkewSeconds: number;
  /** Appliance-wide bound on lineage depth (policy may bound it lower). */
  readonly maxDepth: number;
  /** Most children of one grant (stored ones, live or not, and those in flight). */
  readonly maxChildren: number;
  /** Deadline of one audit append or one signature; past it the request fails closed. */
  readonly dependencyDeadlineMs: number;
  /** Most requestIds kept in memory (all are persisted). */
  readonly replayCacheSize: number;
  /** How refused requests are aggregated in the audit log (default: 60 s windows). */
  readonly refusals?: RefusalWindowOptions;
  /** The revocation feed's bounds (revocation-feed.ts). */
  readonly revocationFeed?: RevocationFeedSettings;
  /** Lifetime of a signed revocation snapshot, seconds (default 300). */
  readonly revocationSnapshotTtlSeconds?: number;
}

/** The services the pipeline calls (ports: the real ones in production, fakes in tests). */
export interface GrantsDeps {
  readonly attestation: Pick<AttestationService, 'getRuntime' | 'sessionFor' | 'verifyQuote'>;
  /** The engine itself (decides in the event loop) or PolicyWorkers (on worker threads). */
  readonly policy: PolicyDecider;
  readonly audit: Pick<AuditService, 'append'>;
  readonly keys: Pick<KeyService, 'signGrantToken'> &
    Partial<Pick<KeyService, 'activeGrantKid' | 'signJws'>>;
  readonly store: GrantStore;
  readonly random?: (n: number) => Buffer;
  /** The enrolled gateways per audience, for the policy context (absent: none known). */
  readonly gateways?: AudienceGateways;
}

export interface IssuedGrant {
  readonly grantId: string;
  /** JWS compact. */
  readonly grant: string;
  /** RFC 3339. */
  readonly expiresAt: string;
  readonly auditSeq: number;
}

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
  readonly auditSeq: number;
}

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

interface Proven {
  readonly akName: string;
  readonly pcrDigest: string;
  readonly resetCount: number;
  readonly restartCount: number;
  /** The attestation whose session key holds the grant (`cnf`). */
  readonly attestationId: string | null;
  readonly sessionKey: EcSessionJwk;
  readonly resetSeen: boolean;
  readonly sessionAgeSeconds: number;
}

interface ParentLink {
  readonly parent: GrantRecord;
  readonly depth: number;
  readonly delegated: boolean;
}

const sha256Hex = (data: string | Uint8Array): string =>
  createHash('sha256').update(data).digest('hex');

/** RFC 7638 thumbprint of an EC P-256 public JWK, base64url. */
export function jwkThumbprint(jwk: EcSessionJwk): string {
  const members = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
  return createHash('sha256').update(members, 'utf8').digest('base64url');
}

/**
 * The JWS with its ES256 signature in low-S form (s <= n/2). The keys service already
 * signs low-S; this keeps the pipeline's output canonical whatever KeyService it is given.
 */
export function lowS(jws: string): string {
  const parts = jws.split('.');
  const sig = Buffer.from(parts[2] ?? '', 'base64url');
  if (parts.length !== 3 || sig.length !== 64) {
    throw new HsmUnavailableError('the HSM returned a malformed ES256 signature');
  }
  const fixed = Buffer.from(toLowS(sig)).toString('base64url');
  return `${parts[0] ?? ''}.${parts[1] ?? ''}.${fixed}`;
}

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

/** An attestation's reasons report a TPM reset or restart (the policy's `resetSeen`). */
const resetReported = (reasons: readonly string[]): boolean =>
  reasons.includes('tpm_reset_detected') || reasons.includes('tpm_restart_detected');

/**
 * The first reason of every `grant.decision` entry: the content hash of the policy set that
 * decided (the grant's `pol`). PROTOCOL.md §4 gives an entry no field of its own for it.
 */
export const policyReason = (policyHash: string): string => `pol:${policyHash}`;

/**
 * An audit entry holds at most 32 reasons of at most 256 characters (src/audit/entry.ts):
 * a decision with more is recorded with the rest counted and long ones cut, never refused
 * by the log (which would fail the request closed for a policy's wording).
 */
const MAX_AUDIT_REASONS = 32;

function auditReasons(policyHash: string, reasons: readonly string[]): string[] {
  const room = MAX_AUDIT_REASONS - 1;
  const listed =
    reasons.length <= room
      ? reasons
      : [...reasons.slice(0, room - 1), `and ${reasons.length - (room - 1)} more`];
  return [policyReason(policyHash), ...listed.map(fitReason)];
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

const AUDIT_ID = /^[A-Za-z0-9_.:@/+-]{1,128}$/;
// eslint-disable-next-line no-control-regex -- the control characters are what it excludes
const AUDIT_TEXT = /^[^\u0000-\u001f\u007f]{1,512}$/u;

/**
 * A claimed id as an audit id fact: itself when it is one, else `digest:` and its SHA-256
 * (a refused request's runtime id is whatever the sender wrote).
 */
function auditId(value: string): string {
  return AUDIT_ID.test(value) ? value : `digest:${sha256Hex(value)}`;
}

/** A claimed name as an audit text fact (control characters are never written). */
function auditText(value: string): string {
  return AUDIT_TEXT.test(value) ? value : `digest:${sha256Hex(value)}`;
}

/** At most 32 policy ids, each a text fact (the rest counted, like reasons). */
function auditList(ids: readonly string[]): string[] {
  const fitted = ids.map(auditText);
  return fitted.length <= MAX_AUDIT_REASONS
    ? fitted
    : [
        ...fitted.slice(0, MAX_AUDIT_REASONS - 1),
        `and ${fitted.length - (MAX_AUDIT_REASONS - 1)} more`,
      ];
}

/** The deadline, as an error of the dependency's own kind. */
async function within<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(onTimeout());
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Failures of a dependency keep their own unavailable code; anything else becomes `fallback`. */
function unavailable(e: unknown, fallback: (cause: unknown) => GrantorError): GrantorError {
  if (e instanceof UnavailableError) return e;
  return fallback(e);
}

export class GrantService {
  readonly #config: GrantsConfig;
  readonly #deps: GrantsDeps;
  readonly #random: (n: number) => Buffer;
  readonly #replay: ReplayGuard;
  readonly #queue = new KeyedQueue();
  /** Child issuance (shared) against revocation (exclusive), per lineage root. */
  readonly #roots = new RootLocks();
  /** Children past the width check and not yet settled, per parent. */
  readonly #pendingChildren = new Map<string, number>();
  #gate: Promise<void> | undefined;
  /** Session public keys, imported once per session: the JWK import was ~1/3 of a verify. */
  readonly #sessionKeys = new WeakMap<EcSessionJwk, { jwk: string; key: KeyObject }>();
  readonly #refusals: GrantRefusalWindow;
  /** Every revocation applied, sequenced, for gateways (docs/protocol.md §3.1). */
  readonly revocations: RevocationFeed;
  /** The signed list of what is revoked now (same section). */
  readonly snapshots: RevocationSnapshots;

  constructor(config: GrantsConfig, deps: GrantsDeps) {
    this.#config = config;
    this.#deps = deps;
    this.revocations = new RevocationFeed(deps.store, config.revocationFeed);
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
  async #recordRefusal(req: CheckedRequest, code: string, nowMs: number): Promise<void> {
    const runtime = auditId(req.runtimeId);
    const admission = this.#refusals.admit(runtime, code, nowMs);
    if (!admission.write) return;
    const body = unsignedRequestText(req.body);
    try {
      await this.#append({
        type: 'grant.refused',
        subject: runtime,
        decision: code,
        digest: sha256Hex(body),
        facts: {
          runtime,
          code,
          requestId: auditText(req.requestId),
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
      await within(
        this.#gate,
        this.#config.dependencyDeadlineMs,
        () =>
          new GrantStoreUnavailableError({
            details: { reason: 'still marking the allows a previous run never released' },
          }),
      );
    }

    const runtime = await this.#deps.attestation.getRuntime(req.runtimeId);
    if (runtime.state !== 'active') throw new RuntimeNotActiveError();

    // Before the proof, which may spend state (a quote's nonce, the runtime's counters, its
    // session): a stale or replayed request changes nothing.
    await this.#unused(req, nowMs);
    const proven = await this.#prove(req, runtime, nowMs);
    const idExpiresAt = await this.#fresh(req, nowMs);
    const used = { runtimeId: req.runtimeId, requestId: req.requestId, expiresAt: idExpiresAt };
    try {
      const run = () => this.#decideAndIssue(req, runtime, proven, used, nowMs);
      // A child is checked and stored while no revoke of its tree runs (root-lock.ts).
      const root = await this.#parentRoot(req);
      const issued = root === undefined ? await run() : await this.#roots.shared(root, run);
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
    runtime: Awaited<ReturnType<AttestationService['getRuntime']>>,
    proven: Proven,
    used: UsedRequest,
    nowMs: number,
  ): Promise<IssuedGrant> {
    const link = await this.#lineage(req, nowMs);
    try {
      return await this.#issue(req, runtime, proven, used, nowMs, link);
    } finally {
      if (link !== undefined) this.#childSettled(link.parent.grantId);
    }
  }

  /** A child's place under its parent is held from the width check until it settles. */
  #childSettled(parentId: string): void {
    const n = (this.#pendingChildren.get(parentId) ?? 1) - 1;
    if (n <= 0) this.#pendingChildren.delete(parentId);
    else this.#pendingChildren.set(parentId, n);
  }

  /** From the policy decision to the stored grant. */
  async #issue(
    req: CheckedRequest,
    runtime: Awaited<ReturnType<AttestationService['getRuntime']>>,
    proven: Proven,
    used: UsedRequest,
    nowMs: number,
    link: ParentLink | undefined,
  ): Promise<IssuedGrant> {
    const grantId = `gr_${this.#random(16).toString('base64url')}`;
    const policyRequest = await policyRequestFor(
      { req, runtime, proof: proven, link },
      { attestation: this.#deps.attestation, gateways: this.#deps.gateways },
    );
    const decision = await this.#decide(policyRequest);

    const bodyText = unsignedRequestText(req.body);
    // requestDigest's value, without canonicalising the request twice on every decision.
    const digest = sha256Hex(bodyText);
    // The request the decision was made on, kept by its digest with the entry.
    const body = bodyText.length <= MAX_BODY_LENGTH ? { body: bodyText } : {};
    const facts = (matched: readonly string[], exp: number | null): GrantDecisionFacts => ({
      // Facts are bounded names: whatever the request wrote is made one (never refused).
      runtime: auditId(req.runtimeId),
      action: auditText(req.action),
      resource: auditText(req.resource),
      audience: auditText(req.audience),
      parent: req.parentGrantId === null ? null : auditId(req.parentGrantId),
      requestId: auditText(req.requestId),
      parametersDigest: req.parametersDigest,
      proofMode: req.proof.mode,
      attestationId: proven.attestationId === null ? null : auditId(proven.attestationId),
      policyHash: decision.policyHash,
      matchedPolicies: auditList(matched),
      keyId: exp === null ? null : this.#activeKid(),
      expiresAt: exp === null ? null : iso(exp),
    });
    // Allow-only: anything but an explicit "allow" (a new kind, a damaged answer) denies.
    if (decision.decision !== 'allow') {
      const entry = await this.#append({
        type: 'grant.decision',
        subject: grantId,
        decision: 'deny',
        reasons: auditReasons(decision.policyHash, decision.reasons),
        digest,
        facts: facts(decision.determiningPolicies, null),
        ...body,
      });
      await this.#storeCall(() =>
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
    const entry = await this.#append({
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
      const claims = {
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
        cnf: { jkt: jwkThumbprint(proven.sessionKey) },
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
      await this.#storeCall(() => this.#deps.store.create(record, used));
      return { grantId, grant, expiresAt: iso(exp), auditSeq: entry.seq };
    } catch (e) {
      const code = e instanceof GrantorError ? e.code : 'internal_error';
      // Best effort: when the log itself is down this fails too, and the answer is 503 anyway.
      await this.#append({
        type: 'grant.issue_failed',
        subject: grantId,
        decision: 'failed',
        reasons: [code],
        digest,
        facts: allowFacts,
      }).catch(() => undefined);
      throw e;
    }
  }

  /** The grant key that will sign (recorded with an allow); null when it cannot be told. */
  #activeKid(): string | null {
    try {
      const kid = this.#deps.keys.activeGrantKid?.();
      return kid === undefined ? null : auditId(kid);
    } catch {
      return null;
    }
  }

  /** Proof of the request: a live session's signature, or a quote over the request. */
  async #prove(
    req: CheckedRequest,
    runtime: Awaited<ReturnType<AttestationService['getRuntime']>>,
    nowMs: number,
  ): Promise<Proven> {
    const attestation = this.#deps.attestation;
    if (req.proof.mode === 'session') {
      const session = attestation.sessionFor(req.proof.attestationId);
      if (session === undefined) throw new SessionNotLiveError();
      // A session opened by one runtime never speaks for another.
      if (session.runtimeId !== req.runtimeId) throw new SessionRuntimeMismatchError();
      const last = runtime.lastAttestation;
      // Every attestation ends the previous session: a live one is the runtime's latest.
      if (last?.attestationId !== session.attestationId) throw new SessionNotLiveError();
      let valid: boolean;
      try {
        valid = verifySignature(
          'sha256',
          Buffer.from(sessionSigningInput(req.body), 'utf8'),
          { key: this.#sessionKey(session.sessionKey), dsaEncoding: 'ieee-p1363' },
          Buffer.from(req.proof.signature, 'base64url'),
        );
      } catch {
        valid = false;
      }
      if (!valid) throw new RequestSignatureInvalidError();
      return {
        akName: session.akName,
        pcrDigest: session.pcrDigestHex,
        resetCount: session.resetCount,
        restartCount: session.restartCount,
        attestationId: session.attestationId,
        sessionKey: session.sessionKey,
        resetSeen: resetReported(last.reasons),
        sessionAgeSeconds: Math.max(0, Math.floor((nowMs - Date.parse(last.at)) / 1000)),
      };
    }
    // Quote mode: the quote is qualified with SHA-256(nonce || SHA-256(JCS(request - quote))).
    const quote = req.proof.quote;
    const nonce =
      typeof quote.nonce === 'string' ? Buffer.from(quote.nonce, 'base64') : Buffer.alloc(0);
    const qd = qualifyingData(nonce, withoutQuote(req.body));
    const verified = await attestation.verifyQuote(req.runtimeId, quote, qd);
    // The grant is held by the session key of the runtime's live attested session, which the
    // same AK vouched for: without one there is no key to bind the grant to (cnf).
    const last = (await attestation.getRuntime(req.runtimeId)).lastAttestation;
    const session = last === null ? undefined : attestation.sessionFor(last.attestationId);
    if (last === null || session?.runtimeId !== req.runtimeId) {
      throw new SessionNotLiveError('quote mode needs a live attested session to hold the grant');
    }
    return {
      akName: verified.akName,
      pcrDigest: verified.pcrDigestHex,
      resetCount: verified.resetCount,
      restartCount: verified.restartCount,
      attestationId: session.attestationId,
      sessionKey: session.sessionKey,
      // As in session mode, the session's attestation reported a reset or restart; or the
      // quote shows one since that attestation (a restart leaves the session live; a reset
      // ends it, and the session check above refuses).
      resetSeen:
        resetReported(last.reasons) ||
        verified.resetCount !== session.resetCount ||
        verified.restartCount !== session.restartCount,
      sessionAgeSeconds: 0,
    };
  }

  /** The session key as a KeyObject, cached per session; checked against the JWK each time. */
  #sessionKey(jwk: EcSessionJwk): KeyObject {
    const members = `${jwk.kty}.${jwk.crv}.${jwk.x}.${jwk.y}`;
    const cached = this.#sessionKeys.get(jwk);
    if (cached?.jwk === members) return cached.key;
    const key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
    this.#sessionKeys.set(jwk, { jwk: members, key });
    return key;
  }

  /**
   * requestId not seen in memory, issuedAt within the skew, and the memory loaded (the
   * first request after a start loads the store's live ids).
   */
  async #inWindow(req: CheckedRequest, nowMs: number): Promise<void> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    if (replay.seen(runtimeId, requestId, nowMs)) throw new RequestReplayedError();
    if (Math.abs(nowMs - req.issuedAtMs) > this.#config.clockSkewSeconds * 1000) {
      throw new RequestStaleError();
    }
    const loading = replay.ready(nowMs);
    if (loading === undefined) return;
    await this.#storeCall(() => loading);
    // A twin may have reserved the id while this one waited.
    if (replay.seen(runtimeId, requestId, nowMs)) throw new RequestReplayedError();
  }

  /**
   * The freshness and replay checks of `#fresh`, run before the proof and reserving
   * nothing: an unproven request never holds an id (a forged copy cannot burn a real
   * request's id), and `#fresh` checks again and reserves once the proof has passed.
   */
  async #unused(req: CheckedRequest, nowMs: number): Promise<void> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    await this.#inWindow(req, nowMs);
    const used = replay.usedInMemory(runtimeId, requestId, nowMs);
    const known = used ?? (await this.#storeCall(() => replay.persisted(runtimeId, requestId)));
    if (known) throw new RequestReplayedError();
  }

  /**
   * requestId not seen for this runtime, issuedAt within the skew; then the id is used:
   * reserved in memory at once. It is written with the answer that uses it (the grant's
   * own write, or after a deny's audit entry); a request that fails before that keeps its
   * id reserved in memory only, having released nothing. Returns the id's expiry.
   */
  async #fresh(req: CheckedRequest, nowMs: number): Promise<number> {
    const { runtimeId, requestId } = req;
    const replay = this.#replay;
    await this.#inWindow(req, nowMs);
    // Checked and reserved in one synchronous step: a concurrent twin sees the reservation.
    const used = replay.usedInMemory(runtimeId, requestId, nowMs);
    if (used === true) throw new RequestReplayedError();
    const keepUntil = req.issuedAtMs + this.#config.clockSkewSeconds * 1000;
    replay.reserve(runtimeId, requestId, keepUntil, nowMs);
    if (used === undefined) {
      let known: boolean;
      try {
        known = await this.#storeCall(() => replay.persisted(runtimeId, requestId));
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

  /** The root of the requested parent's tree (undefined: no parent, or none stored). */
  async #parentRoot(req: CheckedRequest): Promise<string | undefined> {
    const parentId = req.parentGrantId;
    if (parentId === null) return undefined;
    return (await this.#storeCall(() => this.#deps.store.get(parentId)))?.root;
  }

  /**
   * The chain above a grant, parent first, up to its root; every link must agree (same
   * root, depth one less, depth 0 only at the root). Throws GrantLineageInvalidError.
   */
  async #ancestors(record: GrantRecord): Promise<GrantRecord[]> {
    const chain: GrantRecord[] = [];
    let node = record;
    while (node.parent !== null) {
      const parentId = node.parent;
      // Depth strictly falls to 0 at the root: a damaged store cannot make this loop.
      if (node.depth <= 0) throw new GrantLineageInvalidError();
      const above = await this.#storeCall(() => this.#deps.store.get(parentId));
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
  async #revokedIn(records: readonly GrantRecord[]): Promise<boolean> {
    if (records.some((r) => r.revokedAt !== null)) return true;
    for (const runtimeId of new Set(records.map((r) => r.runtimeId))) {
      try {
        const runtime = await this.#deps.attestation.getRuntime(runtimeId);
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

  async #lineage(req: CheckedRequest, nowMs: number): Promise<ParentLink | undefined> {
    if (req.parentGrantId === null) return undefined;
    const parentId = req.parentGrantId;
    const parent = await this.#storeCall(() => this.#deps.store.get(parentId));
    if (parent === undefined) throw new GrantParentNotFoundError();
    if (parent.exp * 1000 <= nowMs) throw new GrantParentExpiredError();
    if (parent.revokedAt !== null) throw new GrantParentRevokedError();
    // Every link up to the root must agree, and no ancestor (nor its runtime) be revoked:
    // a cascade cut short (a crash, a failed write) must not leave a branch usable.
    const chain = [parent, ...(await this.#ancestors(parent))];
    if (await this.#revokedIn(chain)) {
      throw new GrantParentRevokedError('a grant above the parent, or its runtime, was revoked');
    }
    const depth = parent.depth + 1;
    if (depth > this.#config.maxDepth) {
      throw new GrantDepthExceededError(undefined, {
        details: { maxDepth: this.#config.maxDepth },
      });
    }
    // Width: the stored children and those in flight, checked and counted in one step.
    const stored = (await this.#storeCall(() => this.#deps.store.children(parentId))).length;
    const pending = this.#pendingChildren.get(parentId) ?? 0;
    if (stored + pending >= this.#config.maxChildren) {
      throw new GrantWidthExceededError(undefined, {
        details: { maxChildren: this.#config.maxChildren },
      });
    }
    this.#pendingChildren.set(parentId, pending + 1);
    // Delegation to another runtime is the policy's call (context.lineage.delegated).
    return { parent, depth, delegated: parent.runtimeId !== req.runtimeId };
  }

  async #decide(request: PolicyRequest): Promise<PolicyDecision> {
    try {
      // The decider has deadlines of its own; this one holds whatever it is.
      return await within(
        Promise.resolve(this.#deps.policy.decide(request)),
        this.#config.dependencyDeadlineMs,
        () => new PolicyUnavailableError('the policy engine did not decide within its deadline'),
      );
    } catch (e) {
      if (e instanceof GrantorError && !(e instanceof UnavailableError)) throw e;
      throw unavailable(
        e,
        (cause) => new PolicyUnavailableError('the policy engine failed', { cause }),
      );
    }
  }

  async #append(
    event: Parameters<AuditService['append']>[0],
  ): Promise<{ seq: number; hash: string }> {
    const work = this.#deps.audit.append(event);
    try {
      return await within(
        work,
        this.#config.dependencyDeadlineMs,
        () => new AuditUnavailableError('the audit log did not commit within its deadline'),
      );
    } catch (e) {
      if (event.type === 'grant.decision' && event.decision === 'allow') {
        // A late commit of this "allow" would be unmarked: mark it when it lands.
        work.then(
          () =>
            this.#deps.audit
              .append({
                ...event,
                type: 'grant.issue_failed',
                decision: 'failed',
                reasons: ['audit_unavailable'],
              })
              .catch(() => undefined),
          () => undefined,
        );
      }
      throw unavailable(
        e,
        (cause) => new AuditUnavailableError('the audit log is unavailable', { cause }),
      );
    }
  }

  async #sign(claims: Record<string, unknown>): Promise<string> {
    try {
      const { token, batched } = await within(
        this.#deps.keys.signGrantToken(
          { typ: 'grant+jwt' },
          Buffer.from(JSON.stringify(claims), 'utf8'),
        ),
        this.#config.dependencyDeadlineMs,
        () => new HsmUnavailableError('the HSM did not sign within its deadline'),
      );
      // A batch-signed grant's signature is its batch's (low-S by the keys service).
      return batched ? token : lowS(token);
    } catch (e) {
      throw unavailable(
        e,
        (cause) => new HsmUnavailableError('the grant could not be signed', { cause }),
      );
    }
  }

  async #storeCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof GrantorError) throw e;
      throw new GrantStoreUnavailableError({ cause: e });
    }
  }

  /** Run `fn` after every earlier call for the same key. */
  #serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(key, fn);
  }

  // ---------------------------------------------------------------------------------------
  // POST /v1/grants/{grantId}/redeem

  /**
   * Single use: the first call wins (serialised per grant; the redemption is persisted
   * before it is audited, so a crash in between leaves the grant used, never reusable).
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
    return this.#serial(grantId, async () => {
      const record = await this.#storeCall(() => this.#deps.store.get(grantId));
      if (record === undefined) throw new GrantNotFoundError();
      if (record.audience !== audience) throw new GrantAudienceMismatchError();
      if (record.redemption !== null) throw new GrantAlreadyRedeemedError();
      if (record.revokedAt !== null) throw new GrantRevokedError();
      if (record.exp * 1000 <= now.getTime()) throw new GrantExpiredError();
      // Not only the grant: any grant above it, or the runtime of any of them, revoked.
      if (await this.#revokedIn([record, ...(await this.#ancestors(record))])) {
        throw new GrantRevokedError('a grant above it, or its runtime, was revoked');
      }
      const redemption: Redemption = {
        at: now.toISOString(),
        audience,
        outcome,
        gateway: gateway.id,
      };
      await this.#storeCall(() => this.#deps.store.update([{ ...record, redemption }]));
      const entry = await this.#append({
        type: 'grant.redeem',
        subject: grantId,
        decision: 'redeemed',
        reasons: [`gateway:${gateway.id}`, ...(outcome === null ? [] : [outcome])],
        digest: sha256Hex(
          jcs({ grantId, audience, outcome, gateway: gateway.id, at: redemption.at }),
        ),
        facts: {
          grant: grantId,
          runtime: auditId(record.runtimeId),
          gateway: auditText(gateway.id),
          outcome,
        },
      });
      return { grantId, redeemedAt: redemption.at, auditSeq: entry.seq };
    });
  }

  // ---------------------------------------------------------------------------------------
  // POST /v1/grants/{grantId}/outcome

  /**
   * What the redeeming gateway executed: once per grant, by that gateway only. Audited
   * (`grant.outcome`) before it is stored; a store failure after the entry leaves the
   * outcome unrecorded, and the gateway may report it again.
   */
  async outcome(
    grantId: string,
    body: { outcome: ExecutionOutcome; resultDigest?: string },
    now: Date,
    gateway: RedeemingGateway,
  ): Promise<OutcomeResult> {
    return this.#serial(grantId, async () => {
      const record = await this.#storeCall(() => this.#deps.store.get(grantId));
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
      const entry = await this.#append({
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
      });
      await this.#storeCall(() => this.#deps.store.update([{ ...record, execution }]));
      return { grantId, outcome: body.outcome, recordedAt: execution.at, auditSeq: entry.seq };
    });
  }

  // ---------------------------------------------------------------------------------------
  // GET /v1/grants/{grantId}/lineage, POST /v1/grants/{grantId}/revoke

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

  async #descendants(grantId: string): Promise<GrantRecord[]> {
    const out: GrantRecord[] = [];
    const seen = new Set<string>([grantId]);
    let frontier = [grantId];
    while (frontier.length > 0) {
      const next: string[] = [];
      for (const id of frontier) {
        for (const child of await this.#storeCall(() => this.#deps.store.children(id))) {
          if (seen.has(child)) continue;
          seen.add(child);
          const r = await this.#storeCall(() => this.#deps.store.get(child));
          if (r === undefined) continue;
          out.push(r);
          next.push(child);
        }
      }
      frontier = next;
    }
    return out;
  }

  async lineage(grantId: string, now: Date): Promise<Lineage> {
    const nowMs = now.getTime();
    const record = await this.#storeCall(() => this.#deps.store.get(grantId));
    if (record === undefined) throw new GrantNotFoundError();
    const ancestors: GrantView[] = [];
    let parentId = record.parent;
    const seen = new Set<string>([grantId]);
    while (parentId !== null && !seen.has(parentId)) {
      seen.add(parentId);
      const id = parentId;
      const p = await this.#storeCall(() => this.#deps.store.get(id));
      if (p === undefined) break;
      ancestors.push(this.#view(p, nowMs));
      parentId = p.parent;
    }
    const descendants = (await this.#descendants(grantId)).map((r) => this.#view(r, nowMs));
    return { grant: this.#view(record, nowMs), ancestors, descendants };
  }

  /**
   * Revoke a grant and its live (unexpired, unrevoked) descendants; audited before it
   * applies. Runs alone on the grant's lineage root, so no child of the tree is checked or
   * stored meanwhile (root-lock.ts). Each grant is rewritten under its own lock, so a
   * redemption racing with the revocation is never overwritten.
   */
  async revoke(grantId: string, actor: string, now: Date): Promise<RevokeResult> {
    const first = await this.#storeCall(() => this.#deps.store.get(grantId));
    if (first === undefined) throw new GrantNotFoundError();
    return this.#roots.exclusive(first.root, async () => {
      const targets = await this.#liveSubtree([first], now.getTime());
      const ids = targets.map((r) => r.grantId);
      const at = now.toISOString();
      const { reasons, idsDigest } = revokeReasons([`by:${actor}`], ids);
      const entry = await this.#append({
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
    for (const id of await this.#storeCall(() => this.#deps.store.grantsOf(runtimeId))) {
      const r = await this.#storeCall(() => this.#deps.store.get(id));
      if (r !== undefined && r.runtimeId === runtimeId) own.push(r);
    }
    const roots = [...new Set(own.map((r) => r.root))].sort();
    const underAll = async <T>(i: number, fn: () => Promise<T>): Promise<T> => {
      const root = roots[i];
      if (root === undefined) return fn();
      return this.#roots.exclusive(root, () => underAll(i + 1, fn));
    };
    return underAll(0, async () => {
      // Gateways learn of the runtime itself, whether or not it has a live grant.
      await this.#storeCall(() =>
        this.revocations.apply(
          [],
          [
            {
              kind: 'runtime',
              runtimeId,
              at: now.toISOString(),
              exp: Math.floor(nowMs / 1000) + this.#config.maxTtlSeconds,
            },
          ],
        ),
      );
      const targets = await this.#liveSubtree(own, nowMs);
      const ids = targets.map((r) => r.grantId);
      if (ids.length === 0) return { runtimeId, revoked: [], auditSeq: null };
      const at = now.toISOString();
      const { reasons, idsDigest } = revokeReasons([`by:${actor}`, `runtime:${runtimeId}`], ids);
      const entry = await this.#append({
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
      for (const id of await this.#storeCall(() => this.#deps.store.grantsOf(runtimeId))) {
        const r = await this.#storeCall(() => this.#deps.store.get(id));
        if (r !== undefined && r.runtimeId === runtimeId) own.push(r);
      }
    }
    const roots = [...new Set(own.map((r) => r.root))].sort();
    const underAll = async <T>(i: number, fn: () => Promise<T>): Promise<T> => {
      const root = roots[i];
      if (root === undefined) return fn();
      return this.#roots.exclusive(root, () => underAll(i + 1, fn));
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
      const entry = await this.#append({
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
      for (const r of [start, ...(await this.#descendants(start.grantId))]) {
        if (seen.has(r.grantId)) continue;
        seen.add(r.grantId);
        if (isLive(r)) out.push(r);
      }
    }
    return out;
  }

  async #markRevoked(ids: readonly string[], at: string): Promise<void> {
    for (const id of ids) {
      await this.#serial(id, async () => {
        const current = await this.#storeCall(() => this.#deps.store.get(id));
        if (current === undefined || current.revokedAt !== null) return;
        // The record and its feed event, in one synced write (revocation-feed.ts).
        await this.#storeCall(() =>
          this.revocations.apply(
            [{ ...current, revokedAt: at }],
            [{ kind: 'grant', grantId: id, runtimeId: current.runtimeId, at, exp: current.exp }],
          ),
        );
      });
    }
  }
}
