/**
 * The registrar and the attested-session service (PROTOCOL.md §1, §2): enrollment with
 * MakeCredential, single-attempt activation, challenges, quote verification and attested
 * sessions. Every enrollment, activation and attestation, accepted or not, is recorded in
 * the audit log before the answer; when the log cannot record, nothing is granted (503).
 */
import {
  createHash,
  createPublicKey,
  randomBytes,
  timingSafeEqual,
  type X509Certificate,
} from 'node:crypto';
import { UnavailableError } from '../shared/errors.js';
import { TPM_ALG } from '../tpm/marshal/constants.js';
import { TpmParseError } from '../tpm/marshal/errors.js';
import { objectName, unmarshalTpm2bPublic, type TpmtPublic } from '../tpm/marshal/public.js';
import { parseAkPublic, type AkPublic } from './ak.js';
import { checkEkPublic, validateEkCertificate } from './ek-certificate.js';
import {
  ActivationFailedError,
  EkAlreadyEnrolledError,
  EkPublicInvalidError,
  ReferencePolicyUnknownError,
  RuntimeIdentityMismatchError,
  RuntimeStateInvalidError,
  SessionKeyInvalidError,
  UnknownRuntimeError,
  QuoteMalformedError,
} from './errors.js';
import { makeCredential } from './make-credential.js';
import { NonceStore, type NonceStatus } from './nonces.js';
import { policyForLabels, type ReferencePolicy } from './reference-policy.js';
import type { RuntimeRecord, RuntimeState, RuntimeStore } from './runtime-store.port.js';
import {
  jcs,
  parseQuoteRequest,
  qualifyingData,
  verifyParsedQuote,
  type ParsedQuote,
  type QuoteFacts,
  type QuoteRequest,
} from './verify-quote.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { MeasuredBoot, type MeasuredBootOutcome } from './measured-boot/measured-boot.js';
import type { MeasuredBootRequest } from './measured-boot/evidence.js';
import type { MeasuredBootEvidence } from './measured-boot/verify.js';

/** The narrow audit port this domain needs; the lead wires it to the audit log. */
export interface AuditSink {
  record(event: {
    type: string;
    subject: string;
    decision?: string;
    reasons?: string[];
    /** Hex SHA-256 of the facts (JCS), never secrets. */
    digest: string;
  }): Promise<void>;
}

export class AuditUnavailableError extends UnavailableError {
  constructor(cause: unknown) {
    super('audit_unavailable', 'the audit log is unavailable', { cause });
  }
}

export interface EcSessionJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
}

export interface EnrollRequest {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly ekCertificate?: string;
  readonly ekPublic?: string;
  readonly akPublic: string;
}

export interface EnrollResponse {
  readonly runtimeId: string;
  readonly state: 'pending_activation';
  readonly credentialBlob: string;
  readonly encryptedSecret: string;
}

export interface RuntimeView {
  readonly runtimeId: string;
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly state: RuntimeState;
  readonly ekCertified: boolean;
  readonly akName: string;
  readonly referencePolicy: string | null;
  readonly createdAt: string;
  readonly lastAttestation: {
    attestationId: string;
    verdict: 'trusted' | 'untrusted';
    reasons: string[];
    at: string;
  } | null;
}

export interface AttestationResponse {
  readonly attestationId: string;
  readonly verdict: 'trusted' | 'untrusted';
  readonly reasons: string[];
  /** End of the attested session; null when untrusted (no session). */
  readonly validUntil: string | null;
  readonly pcrDigestHex: string;
  readonly resetCount: number;
  readonly restartCount: number;
  /** With an event log or IMA list: events verified, IMA entries verified so far (next offset). */
  readonly measuredBoot?: { readonly events: number; readonly imaEntries: number };
}

/** A live attested session (for grants in session mode). */
export interface AttestedSession {
  readonly attestationId: string;
  readonly runtimeId: string;
  readonly sessionKey: EcSessionJwk;
  readonly akName: string;
  readonly pcrDigestHex: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly validUntil: Date;
  /** The reference policy the quote was verified against; disabling it ends the session. */
  readonly referencePolicy?: string;
}

/** What a quote-mode grant gets from verifyQuote. */
export interface VerifiedQuote {
  readonly runtimeId: string;
  readonly akName: string;
  readonly pcrDigestHex: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly resetDetected: boolean;
}

export interface AttestationConfig {
  readonly trustedEkCas: readonly X509Certificate[];
  readonly referencePolicies: readonly ReferencePolicy[];
  /** Attested session lifetime (default 15 min). */
  readonly sessionTtlMs?: number;
  readonly nonceTtlMs?: number;
  readonly maxNoncesPerRuntime?: number;
}

export interface AttestationDeps {
  readonly store: RuntimeStore;
  readonly audit: AuditSink;
  readonly now?: () => Date;
  readonly random?: (n: number) => Buffer;
  /** Event-log and IMA verification (measured-boot/); a default one when not given. */
  readonly measuredBoot?: MeasuredBoot;
}

/** Failures after which the quote is known authentic and fresh: they end the session. */
const AUTHENTIC_FAILURES: ReadonlySet<string> = new Set([
  'pcr_selection_mismatch',
  'pcr_bank_not_allowed',
  'pcr_selection_incomplete',
  'pcr_digest_mismatch',
  'tpm_counter_rollback',
  'tpm_clock_unsafe',
  'event_log_mismatch',
  'event_log_required',
  'ima_log_mismatch',
  'ima_log_required',
  'ima_log_offset_invalid',
]);

const sha256Hex = (data: Uint8Array | string): string =>
  createHash('sha256').update(data).digest('hex');

function factsDigest(facts: Record<string, unknown>): string {
  return sha256Hex(jcs(facts));
}

function decode(field: string, value: string, max: number): Buffer {
  if (value.length > max * 2 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0)
    throw new QuoteMalformedError(`${field} is not standard base64`, { details: { field } });
  return Buffer.from(value, 'base64');
}

function ekFingerprint(ek: TpmtPublic): string {
  const h = createHash('sha256');
  if (ek.type === TPM_ALG.RSA) h.update('rsa:').update(ek.unique);
  else if (ek.type === TPM_ALG.ECC)
    h.update(`ecc:${ek.parameters.curveId}:`).update(ek.unique.x).update(ek.unique.y);
  return h.digest('hex');
}

/** Validate and copy the session key: an EC P-256 public JWK whose point is on the curve. */
export function parseSessionKey(value: unknown): EcSessionJwk {
  if (typeof value !== 'object' || value === null) throw new SessionKeyInvalidError();
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v).sort().join(',');
  if (keys !== 'crv,kty,x,y' || v.kty !== 'EC' || v.crv !== 'P-256')
    throw new SessionKeyInvalidError();
  const { x, y } = v;
  if (
    typeof x !== 'string' ||
    typeof y !== 'string' ||
    !/^[A-Za-z0-9_-]{43}$/.test(x) ||
    !/^[A-Za-z0-9_-]{43}$/.test(y)
  )
    throw new SessionKeyInvalidError();
  const jwk: EcSessionJwk = { kty: 'EC', crv: 'P-256', x, y };
  try {
    createPublicKey({ key: { ...jwk }, format: 'jwk' });
  } catch (e) {
    throw new SessionKeyInvalidError(undefined, { cause: e });
  }
  return jwk;
}

/** A runtime record and the objects in it, frozen (records are shared from the cache). */
function freezeRecord(r: RuntimeRecord): RuntimeRecord {
  const last = r.lastAttestation;
  return Object.freeze({
    ...r,
    labels: Object.freeze({ ...r.labels }),
    counters: r.counters === null ? null : Object.freeze({ ...r.counters }),
    lastAttestation:
      last === null ? null : Object.freeze({ ...last, reasons: Object.freeze([...last.reasons]) }),
  });
}

export class AttestationService {
  readonly #config: AttestationConfig;
  readonly #store: RuntimeStore;
  readonly #audit: AuditSink;
  readonly #now: () => Date;
  readonly #random: (n: number) => Buffer;
  readonly #nonces: NonceStore;
  readonly #sessions = new Map<string, AttestedSession>();
  readonly #sessionByRuntime = new Map<string, string>();
  readonly #queue = new KeyedQueue();
  readonly #measuredBoot: MeasuredBoot;

  constructor(config: AttestationConfig, deps: AttestationDeps) {
    this.#config = config;
    this.#store = deps.store;
    this.#audit = deps.audit;
    this.#now = deps.now ?? (() => new Date());
    this.#random = deps.random ?? randomBytes;
    this.#measuredBoot = deps.measuredBoot ?? new MeasuredBoot();
    this.#nonces = new NonceStore({
      random: this.#random,
      ...(config.nonceTtlMs === undefined ? {} : { ttlMs: config.nonceTtlMs }),
      ...(config.maxNoncesPerRuntime === undefined
        ? {}
        : { maxPerRuntime: config.maxNoncesPerRuntime }),
    });
  }

  /** Largest attestation request body: a quote with an event log and an IMA list. */
  get attestationBodyLimit(): number {
    return this.#measuredBoot.bodyLimit;
  }

  /** Run `fn` after every earlier call for the same key (one change per runtime at a time). */
  #serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(key, fn);
  }

  async #record(event: Parameters<AuditSink['record']>[0]): Promise<void> {
    try {
      await this.#audit.record(event);
    } catch (e) {
      throw new AuditUnavailableError(e);
    }
  }

  /** Parsed AK publics by their stored bytes: parse once per AK, not per quote (bounded). */
  readonly #akPublics = new Map<string, AkPublic>();

  #akPublic(stored: string): AkPublic {
    let ak = this.#akPublics.get(stored);
    if (ak === undefined) {
      ak = parseAkPublic(Buffer.from(stored, 'base64'));
      if (this.#akPublics.size >= 10_000) {
        const oldest = this.#akPublics.keys().next();
        if (oldest.done !== true) this.#akPublics.delete(oldest.value);
      }
      this.#akPublics.set(stored, ak);
    }
    return ak;
  }

  /**
   * Runtime records as last read or written, by id (bounded): every grant request reads
   * its runtime, and a store read per request was a thread-pool round trip. Exact because
   * every write to the runtime store goes through #write, in this process (LevelDB is
   * locked to one process): #write forgets the record before the write and remembers what
   * it wrote once it is durable, and a read that overlapped any write is not remembered,
   * since it may have returned the record from before that write. Records are frozen, so
   * no caller can change a cached one in place.
   */
  readonly #records = new Map<string, RuntimeRecord>();
  /** Store writes started and finished (two per write): a read that saw it change overlapped one. */
  #writeEvents = 0;
  #writesInFlight = 0;

  #remember(record: RuntimeRecord): void {
    if (this.#records.size >= 10_000 && !this.#records.has(record.runtimeId)) {
      const oldest = this.#records.keys().next();
      if (oldest.done !== true) this.#records.delete(oldest.value);
    }
    this.#records.set(record.runtimeId, freezeRecord(record));
  }

  async #load(runtimeId: string): Promise<RuntimeRecord> {
    const cached = this.#records.get(runtimeId);
    if (cached !== undefined) return cached;
    const events = this.#writeEvents;
    const quiet = this.#writesInFlight === 0;
    const r = await this.#store.get(runtimeId);
    if (r === undefined) throw new UnknownRuntimeError();
    if (quiet && events === this.#writeEvents) {
      this.#remember(r);
      return this.#records.get(runtimeId) ?? r;
    }
    return r;
  }

  #update(record: RuntimeRecord): Promise<void> {
    return this.#write(record.runtimeId, () => this.#store.update(record), record);
  }

  /** The only path to the runtime store's writes; `after`: the record it leaves, if any. */
  async #write(
    runtimeId: string,
    write: () => Promise<void>,
    after: RuntimeRecord | undefined,
  ): Promise<void> {
    this.#records.delete(runtimeId);
    this.#writeEvents += 1;
    this.#writesInFlight += 1;
    try {
      await write();
    } finally {
      this.#writesInFlight -= 1;
      this.#writeEvents += 1;
    }
    if (after !== undefined) this.#remember(after);
  }

  // ---------------------------------------------------------------------------------------
  // §1 enrollment

  async enroll(body: EnrollRequest): Promise<EnrollResponse> {
    // Copy and check everything before the first await.
    const now = this.#now();
    const name = body.name;
    const labels = { ...(body.labels ?? {}) };
    const akBytes = decode('akPublic', body.akPublic, 1024);
    const certBytes =
      body.ekCertificate === undefined
        ? undefined
        : decode('ekCertificate', body.ekCertificate, 8192);
    const ekBytes =
      body.ekPublic === undefined ? undefined : decode('ekPublic', body.ekPublic, 1024);
    let ekPublic: TpmtPublic | undefined;
    if (ekBytes !== undefined) {
      try {
        ekPublic = unmarshalTpm2bPublic(ekBytes);
      } catch (e) {
        if (e instanceof TpmParseError) throw new EkPublicInvalidError(undefined, { cause: e });
        throw e;
      }
    }
    let ek: TpmtPublic;
    if (certBytes !== undefined) {
      const validated = validateEkCertificate(certBytes, {
        trustedCas: this.#config.trustedEkCas,
        now,
        ekPublic,
      });
      ek = checkEkPublic(validated.ekPublic);
    } else if (ekPublic !== undefined) {
      // A bare EK public key: the runtime waits for operator approval after activation.
      ek = checkEkPublic(ekPublic);
    } else {
      throw new EkPublicInvalidError('an ekCertificate or an ekPublic is required');
    }
    const ak = parseAkPublic(akBytes);
    const akName = objectName(ak);
    const fingerprint = ekFingerprint(ek);

    return this.#serial('enroll', async () => {
      const holder = await this.#store.findByEk(fingerprint);
      if (holder !== undefined) throw new EkAlreadyEnrolledError();
      const sameName = await this.#store.findByName(name);
      if (sameName !== undefined) throw new RuntimeIdentityMismatchError();
      const secret = this.#random(32);
      const made = makeCredential(ek, akName, secret);
      const runtimeId = `rt_${this.#random(16).toString('base64url')}`;
      const record: RuntimeRecord = {
        runtimeId,
        name,
        labels,
        state: 'pending_activation',
        ekCertified: certBytes !== undefined,
        ekFingerprint: fingerprint,
        akPublic: akBytes.toString('base64'),
        akName: akName.toString('hex'),
        secretDigest: sha256Hex(secret),
        createdAt: now.toISOString(),
        counters: null,
        lastAttestation: null,
      };
      secret.fill(0);
      await this.#record({
        type: 'runtime.enroll',
        subject: runtimeId,
        decision: 'pending_activation',
        digest: factsDigest({
          runtimeId,
          name,
          labels,
          ekFingerprint: fingerprint,
          akName: record.akName,
          ekCertified: record.ekCertified,
        }),
      });
      await this.#write(runtimeId, () => this.#store.create(record), record);
      return {
        runtimeId,
        state: 'pending_activation' as const,
        credentialBlob: made.credentialBlob.toString('base64'),
        encryptedSecret: made.encryptedSecret.toString('base64'),
      };
    });
  }

  /**
   * One attempt: the secret is compared in constant time; a wrong one deletes the pending
   * enrollment (the runtime must enroll again) and says nothing about the expected value.
   */
  async activate(
    runtimeId: string,
    body: { secret: string },
  ): Promise<{ runtimeId: string; state: RuntimeState }> {
    const secretDigest = Buffer.from(sha256Hex(decode('secret', body.secret, 128)), 'hex');
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.state !== 'pending_activation' || r.secretDigest === null)
        throw new RuntimeStateInvalidError();
      const expected = Buffer.from(r.secretDigest, 'hex');
      const ok = expected.length === secretDigest.length && timingSafeEqual(expected, secretDigest);
      const state: RuntimeState = ok ? (r.ekCertified ? 'active' : 'pending_approval') : r.state;
      await this.#record({
        type: 'runtime.activate',
        subject: runtimeId,
        decision: ok ? state : 'activation_failed',
        ...(ok ? {} : { reasons: ['activation_failed'] }),
        digest: factsDigest({ runtimeId, akName: r.akName, ok }),
      });
      if (!ok) {
        await this.#write(runtimeId, () => this.#store.delete(r), undefined);
        this.#nonces.forget(runtimeId);
        throw new ActivationFailedError();
      }
      await this.#update({ ...r, state, secretDigest: null });
      return { runtimeId, state };
    });
  }

  async getRuntime(runtimeId: string): Promise<RuntimeView> {
    const r = await this.#load(runtimeId);
    const last = r.lastAttestation;
    return {
      runtimeId: r.runtimeId,
      name: r.name,
      labels: { ...r.labels },
      state: r.state,
      ekCertified: r.ekCertified,
      akName: r.akName,
      referencePolicy: policyForLabels(this.#config.referencePolicies, r.labels)?.name ?? null,
      createdAt: r.createdAt,
      lastAttestation: last === null ? null : { ...last, reasons: [...last.reasons] },
    };
  }

  /** Operator approval of a runtime enrolled with a bare EK public key. */
  async approve(runtimeId: string): Promise<{ runtimeId: string; state: RuntimeState }> {
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.state !== 'pending_approval') throw new RuntimeStateInvalidError();
      await this.#record({
        type: 'runtime.approve',
        subject: runtimeId,
        decision: 'active',
        digest: factsDigest({ runtimeId, akName: r.akName }),
      });
      await this.#update({ ...r, state: 'active' });
      return { runtimeId, state: 'active' as const };
    });
  }

  async revoke(runtimeId: string): Promise<{ runtimeId: string; state: RuntimeState }> {
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.state === 'revoked') throw new RuntimeStateInvalidError();
      // Fail closed: the session ends even if the audit write below fails.
      this.#endSession(runtimeId);
      this.#nonces.forget(runtimeId);
      this.#measuredBoot.forget(runtimeId);
      await this.#record({
        type: 'runtime.revoke',
        subject: runtimeId,
        decision: 'revoked',
        digest: factsDigest({ runtimeId, akName: r.akName }),
      });
      await this.#update({ ...r, state: 'revoked', secretDigest: null });
      return { runtimeId, state: 'revoked' as const };
    });
  }

  // ---------------------------------------------------------------------------------------
  // §2 challenges, attestations, sessions

  async challenge(runtimeId: string): Promise<{ nonce: string; expiresAt: string }> {
    const r = await this.#load(runtimeId);
    if (r.state !== 'active') throw new RuntimeStateInvalidError();
    const { nonce, expiresAt } = this.#nonces.issue(runtimeId, this.#now());
    return { nonce: nonce.toString('base64'), expiresAt: expiresAt.toISOString() };
  }

  /**
   * Decode the nonce and consume it at once (synchronously, before anything else can fail
   * or await): any attempt uses it up, pass or fail.
   */
  #consumeNonce(runtimeId: string, nonce: unknown, now: Date): NonceStatus {
    if (typeof nonce !== 'string' || nonce.length > 64) return 'unknown';
    return this.#nonces.consume(runtimeId, Buffer.from(nonce, 'base64'), now);
  }

  async attest(
    runtimeId: string,
    body: QuoteRequest & { sessionKey: unknown } & MeasuredBootRequest,
  ): Promise<AttestationResponse> {
    const now = this.#now();
    const nonceStatus = this.#consumeNonce(runtimeId, body.nonce, now);
    const parsed = parseQuoteRequest(body);
    const sessionKey = parseSessionKey(body.sessionKey);
    const evidence = this.#measuredBoot.parse(body);
    const qd = qualifyingData(parsed.nonce, sessionKey);
    return this.#serial(runtimeId, async () => {
      const { record, policy, facts, measured } = await this.#verify(
        runtimeId,
        parsed,
        qd,
        nonceStatus,
        'attestation',
        evidence,
      );
      const attestationId = `at_${this.#random(16).toString('base64url')}`;
      const trusted = facts.violations.length === 0 && measured.reasons.length === 0;
      const reasons = trusted
        ? [
            ...(facts.resetDetected ? ['tpm_reset_detected'] : []),
            ...(facts.restartDetected ? ['tpm_restart_detected'] : []),
          ]
        : [...facts.violations.map((v) => v.code), ...measured.reasons];
      const verdict = trusted ? ('trusted' as const) : ('untrusted' as const);
      const validUntil = trusted
        ? new Date(now.getTime() + (this.#config.sessionTtlMs ?? 15 * 60_000))
        : null;
      const pcrDigestHex = facts.pcrDigest.toString('hex');
      // Any authentic, fresh quote ends the previous session; a trusted one opens the next.
      this.#endSession(runtimeId);
      await this.#record({
        type: 'runtime.attest',
        subject: runtimeId,
        decision: verdict,
        reasons,
        digest: factsDigest({
          runtimeId,
          attestationId,
          akName: record.akName,
          policy: policy.name,
          pcrDigest: pcrDigestHex,
          resetCount: facts.resetCount,
          restartCount: facts.restartCount,
          sessionKey,
          ...(measured.summary === undefined ? {} : { measuredBoot: measured.summary }),
        }),
      });
      await this.#update({
        ...record,
        counters: { resetCount: facts.resetCount, restartCount: facts.restartCount },
        lastAttestation: { attestationId, verdict, reasons, at: now.toISOString() },
      });
      measured.commit();
      if (validUntil !== null) {
        this.#sessions.set(attestationId, {
          attestationId,
          runtimeId,
          sessionKey,
          akName: record.akName,
          pcrDigestHex,
          resetCount: facts.resetCount,
          restartCount: facts.restartCount,
          validUntil,
          referencePolicy: policy.name,
        });
        this.#sessionByRuntime.set(runtimeId, attestationId);
      }
      return {
        attestationId,
        verdict,
        reasons,
        validUntil: validUntil?.toISOString() ?? null,
        pcrDigestHex,
        resetCount: facts.resetCount,
        restartCount: facts.restartCount,
        ...(measured.summary === undefined ? {} : { measuredBoot: measured.summary }),
      };
    });
  }

  /**
   * Load the runtime and its policy and run the verifier; a failure after the quote is
   * known authentic and fresh ends the runtime's session and is audited before it is thrown.
   */
  async #verify(
    runtimeId: string,
    parsed: ParsedQuote,
    qd: Buffer,
    nonceStatus: NonceStatus,
    kind: string,
    evidence?: MeasuredBootEvidence,
  ): Promise<{
    record: RuntimeRecord;
    policy: ReferencePolicy;
    facts: QuoteFacts;
    measured: MeasuredBootOutcome;
  }> {
    const record = await this.#load(runtimeId);
    if (record.state !== 'active') throw new RuntimeStateInvalidError();
    const policy = policyForLabels(this.#config.referencePolicies, record.labels);
    if (policy === undefined) throw new ReferencePolicyUnknownError();
    const akPublic = this.#akPublic(record.akPublic);
    try {
      const facts = verifyParsedQuote(parsed, {
        akPublic,
        qualifyingData: qd,
        nonceStatus,
        policy,
        previous: record.counters ?? undefined,
      });
      // The event log and IMA list against the now authentic quote (measured-boot/).
      const measured = this.#measuredBoot.verify(
        runtimeId,
        evidence,
        parsed.values,
        facts,
        policy.measuredBoot,
      );
      return { record, policy, facts, measured };
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const authentic = typeof code === 'string' && AUTHENTIC_FAILURES.has(code);
      if (authentic) this.#endSession(runtimeId);
      await this.#record({
        type: `runtime.${kind}`,
        subject: runtimeId,
        decision: 'rejected',
        reasons: [typeof code === 'string' ? code : 'internal_error'],
        digest: factsDigest({
          runtimeId,
          akName: record.akName,
          code: typeof code === 'string' ? code : null,
        }),
      });
      throw e;
    }
  }

  #endSession(runtimeId: string): void {
    const current = this.#sessionByRuntime.get(runtimeId);
    if (current !== undefined) this.#sessions.delete(current);
    this.#sessionByRuntime.delete(runtimeId);
  }

  /** The live attested session opened by this attestation, if any (expired: none). */
  sessionFor(attestationId: string): AttestedSession | undefined {
    const s = this.#sessions.get(attestationId);
    if (s === undefined) return undefined;
    if (this.#now().getTime() >= s.validUntil.getTime()) {
      this.#endSession(s.runtimeId);
      return undefined;
    }
    // An operator disabled the policy this session was verified against (dual control).
    const policy = s.referencePolicy;
    if (policy !== undefined && !this.#config.referencePolicies.some((p) => p.name === policy)) {
      this.#endSession(s.runtimeId);
      return undefined;
    }
    return s;
  }

  /**
   * Quote-mode grants: verify `quote` for `runtimeId` against `qualifyingData` (the grant
   * request digest, §2). Consumes the nonce; throws on any failure, including the state
   * verdicts (pcr_policy_violation, tpm_reset_detected); an authentic untrusted quote ends
   * the runtime's session.
   */
  async verifyQuote(
    runtimeId: string,
    quote: QuoteRequest,
    qd: Uint8Array,
  ): Promise<VerifiedQuote> {
    const now = this.#now();
    const nonceStatus = this.#consumeNonce(runtimeId, quote.nonce, now);
    const parsed = parseQuoteRequest(quote);
    const expected = Buffer.from(qd);
    return this.#serial(runtimeId, async () => {
      const { record, facts } = await this.#verify(
        runtimeId,
        parsed,
        expected,
        nonceStatus,
        'quote',
      );
      await this.#update({
        ...record,
        counters: { resetCount: facts.resetCount, restartCount: facts.restartCount },
      });
      const first = facts.violations[0];
      if (first !== undefined) {
        this.#endSession(runtimeId);
        throw first;
      }
      if (facts.resetDetected) this.#endSession(runtimeId);
      return {
        runtimeId,
        akName: record.akName,
        pcrDigestHex: facts.pcrDigest.toString('hex'),
        resetCount: facts.resetCount,
        restartCount: facts.restartCount,
        resetDetected: facts.resetDetected,
      };
    });
  }
}
