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
import type {
  AttestationFacts,
  AttestationRejectedFacts,
  Facts,
  RuntimeEventFacts,
} from '../audit/index.js';
import { AuditUnavailableError, factHex, factId, factText } from '../audit/index.js';
import type { GrantorError } from '../shared/errors.js';
import { TPM_ALG } from '../tpm/marshal/constants.js';
import { publicToKeyObject } from '../tpm/marshal/keys.js';
import { TpmParseError } from '../tpm/errors.js';
import { objectName, unmarshalTpm2bPublic, type TpmtPublic } from '../tpm/marshal/public.js';
import { akQualifiedNameUnderEk, parseAkPublic, type AkPublic } from './ak.js';
import { checkEkPublic, validateEkCertificate } from './ek-certificate.js';
import {
  matchRule,
  normaliseManufacturer,
  type EnrollmentFacts,
  type EnrollmentRuleSet,
} from './enrollment-rules.js';
import {
  ActivationFailedError,
  EkAlreadyEnrolledError,
  EkCertificateUntrustedError,
  EkRevokedError,
  EnrollmentExpiredError,
  EkPublicInvalidError,
  ReferencePolicyUnknownError,
  RuntimeIdentityMismatchError,
  RuntimeStateInvalidError,
  SessionKeyInvalidError,
  UnknownRuntimeError,
  QuoteMalformedError,
} from './errors.js';
import { makeCredential } from './make-credential.js';
import { NonceStore } from './nonces.js';
import { policyForLabels, type ReferencePolicy } from './reference-policy.js';
import type {
  EkIdentity,
  LastAttestation,
  RuntimeRecord,
  RuntimeState,
  RuntimeStore,
} from './runtime-store.port.js';
import {
  jcs,
  parseQuoteRequest,
  firmwareHex,
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
import { MeasuredBootViolationError } from './measured-boot/errors.js';

/** The narrow audit port this domain needs; the lead wires it to the audit log. */
export interface AuditSink {
  record(event: {
    type: string;
    subject: string;
    decision?: string;
    reasons?: string[];
    /** Hex SHA-256 of the facts (JCS), never secrets. */
    digest: string;
    /** Typed facts of the entry. */
    facts?: Facts;
  }): Promise<void>;
}

/** The typed audit facts of a verdict (the same facts its digest covers, and more). */
function verdictAuditFacts(
  record: RuntimeRecord,
  attestationId: string,
  policy: ReferencePolicy,
  facts: QuoteFacts,
): AttestationFacts {
  return {
    runtime: record.runtimeId,
    attestationId,
    ekFingerprint: /^[0-9a-f]{64}$/.test(record.ekFingerprint) ? record.ekFingerprint : null,
    akName: record.akName,
    referencePolicy: policy.name,
    pcrDigest: facts.pcrDigest.toString('hex'),
    resetCount: facts.resetCount,
    restartCount: facts.restartCount,
    firmware: firmwareHex(facts.firmwareVersion),
  };
}

/** The typed audit facts of an attestation or quote rejected before a verdict. */
function rejectedAuditFacts(
  record: RuntimeRecord,
  policy: ReferencePolicy | undefined,
  code: unknown,
  authentic: boolean,
): AttestationRejectedFacts {
  return {
    runtime: factId(record.runtimeId),
    akName: factText(record.akName),
    ekFingerprint: factHex(record.ekFingerprint),
    referencePolicy: policy === undefined ? null : factText(policy.name),
    code: typeof code === 'string' ? factId(code) : 'internal_error',
    authentic,
  };
}

/** The facts of a runtime's enrollment and registry events (docs/protocol.md §4.1). */
function runtimeEventFacts(
  r: { readonly runtimeId: string; readonly akName: string; readonly ekFingerprint: string },
  more: { actor?: string; rule?: string | null; labels?: Readonly<Record<string, string>> } = {},
): RuntimeEventFacts {
  return {
    runtime: factId(r.runtimeId),
    akName: r.akName === '' ? null : factText(r.akName),
    ekFingerprint: factHex(r.ekFingerprint),
    actor: more.actor === undefined ? null : factId(more.actor),
    rule: more.rule === undefined || more.rule === null ? null : factText(more.rule),
    labelsDigest: more.labels === undefined ? null : factsDigest(more.labels),
  };
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

/** What operators see of a runtime (GET /v1/runtimes, GET /v1/runtimes/{id}). */
export interface RuntimeView {
  readonly runtimeId: string;
  readonly name: string;
  /** Assigned by a rule or an operator: what policies see. */
  readonly labels: Record<string, string>;
  /** What the runtime asked for at enrollment: never used by a decision. */
  readonly requestedLabels: Record<string, string>;
  /** `rule:<name>`, `operator:<id>`, or null. */
  readonly labelSource: string | null;
  readonly state: RuntimeState;
  readonly ekCertified: boolean;
  readonly ek: {
    publicKeySha256: string | null;
    certificate: { issuer: string; serialNumber: string } | null;
    tpm: { manufacturer: string; model: string; version: string } | null;
  };
  readonly akName: string;
  readonly referencePolicy: string | null;
  readonly createdAt: string;
  /** When a pending enrollment expires (null once activated). */
  readonly pendingExpiresAt: string | null;
  readonly released: { at: string; by: string } | null;
  readonly counters: { resetCount: number; restartCount: number } | null;
  readonly lastQuote: { clock: string; firmwareVersion: string } | null;
  readonly lastAttestation: {
    attestationId: string;
    verdict: 'trusted' | 'untrusted';
    reasons: string[];
    at: string;
  } | null;
}

/** Inventory filters (every one optional; all given must hold). */
export interface RuntimeFilter {
  readonly state?: RuntimeState;
  /** `[name, value]`: the assigned label `name` equals `value`. */
  readonly label?: readonly [string, string];
  readonly referencePolicy?: string;
  readonly verdict?: 'trusted' | 'untrusted' | 'none';
  /** Continue after this runtime id (the previous page's `nextCursor`). */
  readonly after?: string;
  readonly limit: number;
}

export interface RuntimePage {
  readonly runtimes: RuntimeView[];
  /** Pass as `after` for the next page; null at the end. */
  readonly nextCursor: string | null;
}

/** The operator acting on a runtime (from the HTTP layer's authenticated actor). */
export interface RuntimeActor {
  readonly id: string;
  readonly role: string;
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

/** What a verified quote establishes (the verdict of `proveQuote`). */
export interface VerifiedQuote {
  readonly runtimeId: string;
  readonly akName: string;
  readonly pcrDigestHex: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly resetDetected: boolean;
}

/** What a quote-mode grant gets from `proveQuote`: the verdict and what holds the grant. */
export interface QuoteProof extends VerifiedQuote {
  /** The runtime as the verdict left it (its counters, last quote and standing). */
  readonly runtime: RuntimeView;
  /** Its live attested session (the grant's `cnf`); undefined when none is live. */
  readonly session: AttestedSession | undefined;
}

export interface AttestationConfig {
  readonly trustedEkCas: readonly X509Certificate[];
  readonly referencePolicies: readonly ReferencePolicy[];
  /** Operators' enrollment rules (read on every enrollment; absent: none match). */
  readonly enrollmentRules?: EnrollmentRuleSet;
  /** How long an enrollment may wait for activation (default 15 min). */
  readonly pendingEnrollmentTtlMs?: number;
  /** Attested session lifetime (default 15 min). */
  readonly sessionTtlMs?: number;
  readonly nonceTtlMs?: number;
  readonly maxNoncesPerRuntime?: number;
}

export interface AttestationDeps {
  readonly store: RuntimeStore;
  readonly audit: AuditSink;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
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
  'tpm_clock_rollback',
  'tpm_clock_unsafe',
  'quote_signer_mismatch',
  'event_log_mismatch',
  'event_log_required',
  'ima_log_mismatch',
  'ima_log_required',
  'ima_log_offset_invalid',
]);

/** Failures before the AK's signature is known good: they leave the nonce unspent. */
const UNSIGNED_FAILURES: ReadonlySet<string> = new Set([
  'quote_magic_invalid',
  'quote_type_invalid',
  'quote_signature_scheme_mismatch',
  'quote_signature_out_of_range',
  'quote_signature_invalid',
  // Signed, but over another nonce: it does not answer this one (quotes are not secret, so
  // anyone could replay an old one to fill the runtime's spent-nonce table otherwise).
  'quote_nonce_mismatch',
]);

const sha256Hex = (data: Uint8Array | string): string =>
  createHash('sha256').update(data).digest('hex');

/** The most records one inventory page reads. */
const LIST_SCAN_LIMIT = 4096;

function matchesFilter(v: RuntimeView, f: RuntimeFilter): boolean {
  if (f.state !== undefined && v.state !== f.state) return false;
  if (f.label !== undefined && v.labels[f.label[0]] !== f.label[1]) return false;
  if (f.referencePolicy !== undefined && v.referencePolicy !== f.referencePolicy) return false;
  if (f.verdict !== undefined && (v.lastAttestation?.verdict ?? 'none') !== f.verdict) return false;
  return true;
}

/** A verdict: trusted with the resets it reports, or untrusted with every violation. */
function verdictOf(
  facts: QuoteFacts,
  measured: readonly string[],
): { trusted: boolean; reasons: string[] } {
  const trusted = facts.violations.length === 0 && measured.length === 0;
  return {
    trusted,
    reasons: trusted
      ? [
          ...(facts.resetDetected ? ['tpm_reset_detected'] : []),
          ...(facts.restartDetected ? ['tpm_restart_detected'] : []),
        ]
      : [...facts.violations.map((v) => v.code), ...measured],
  };
}

/** What a verdict's audit entry digests, on either route. */
function verdictFacts(
  record: RuntimeRecord,
  attestationId: string,
  policy: ReferencePolicy,
  facts: QuoteFacts,
): Record<string, unknown> {
  return {
    runtimeId: record.runtimeId,
    attestationId,
    akName: record.akName,
    policy: policy.name,
    pcrDigest: facts.pcrDigest.toString('hex'),
    resetCount: facts.resetCount,
    restartCount: facts.restartCount,
  };
}

function factsDigest(facts: Record<string, unknown>): string {
  return sha256Hex(jcs(facts));
}

function lastQuoteOf(facts: QuoteFacts): NonNullable<RuntimeRecord['lastQuote']> {
  return { clock: facts.clock.toString(), firmwareVersion: firmwareHex(facts.firmwareVersion) };
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
    ...(r.lastQuote === undefined ? {} : { lastQuote: Object.freeze({ ...r.lastQuote }) }),
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
  /** SHA-256 of each trusted EK CA, for the bundle in use (recomputed when it is replaced). */
  #caDigests: { cas: readonly X509Certificate[]; digests: Set<string> } | undefined;
  readonly #queue = new KeyedQueue();
  readonly #measuredBoot: MeasuredBoot;

  constructor(config: AttestationConfig, deps: AttestationDeps) {
    this.#config = config;
    this.#store = deps.store;
    this.#audit = deps.audit;
    const now = deps.now ?? Date.now;
    this.#now = () => new Date(now());
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
      throw new AuditUnavailableError('the audit log is unavailable', { cause: e });
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
    // A request: shown to operators, never used by a decision (issue 12).
    const requestedLabels = { ...(body.labels ?? {}) };
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
    let certificate: EkIdentity['certificate'] = null;
    let tpm: EkIdentity['tpm'] = null;
    if (certBytes !== undefined) {
      const validated = validateEkCertificate(certBytes, {
        trustedCas: this.#config.trustedEkCas,
        now,
        ekPublic,
      });
      ek = checkEkPublic(validated.ekPublic);
      certificate = {
        issuer: validated.issuer,
        serialNumber: validated.serialNumber,
        chainSha256: [...validated.chainSha256],
      };
      tpm = { ...validated.tpm, manufacturer: normaliseManufacturer(validated.tpm.manufacturer) };
    } else if (ekPublic !== undefined) {
      // A bare EK public key: only an operator (a rule listing its fingerprint, or an
      // approval) can vouch for it.
      ek = checkEkPublic(ekPublic);
    } else {
      throw new EkPublicInvalidError('an ekCertificate or an ekPublic is required');
    }
    const ak = parseAkPublic(akBytes);
    const akName = objectName(ak);
    const fingerprint = ekFingerprint(ek);
    const identity: EkIdentity = {
      publicKeySha256: sha256Hex(publicToKeyObject(ek).export({ type: 'spki', format: 'der' })),
      certificate,
      tpm,
    };
    const facts: EnrollmentFacts = {
      ekPublicKeySha256: identity.publicKeySha256,
      ...(certificate === null || tpm === null
        ? {}
        : {
            certificate: {
              chainSha256: certificate.chainSha256,
              tpmManufacturer: tpm.manufacturer,
              tpmModel: tpm.model,
            },
          }),
    };
    const rule = matchRule(this.#config.enrollmentRules ?? { version: 1, rules: [] }, facts);

    return this.#serial('enroll', async () => {
      await this.#freeIfExpired(await this.#store.findByEk(fingerprint), now, (holder) =>
        holder.state === 'revoked' ? new EkRevokedError() : new EkAlreadyEnrolledError(),
      );
      await this.#freeIfExpired(
        await this.#store.findByName(name),
        now,
        () => new RuntimeIdentityMismatchError(),
      );
      const secret = this.#random(32);
      const made = makeCredential(ek, akName, secret);
      const runtimeId = `rt_${this.#random(16).toString('base64url')}`;
      const record: RuntimeRecord = {
        runtimeId,
        name,
        labels: { ...(rule?.labels ?? {}) },
        requestedLabels,
        labelSource: rule === undefined ? null : `rule:${rule.name}`,
        activationState: rule?.state ?? 'pending_approval',
        ek: identity,
        released: null,
        state: 'pending_activation',
        ekCertified: certBytes !== undefined,
        ekFingerprint: fingerprint,
        akPublic: akBytes.toString('base64'),
        akName: akName.toString('hex'),
        secretDigest: sha256Hex(secret),
        createdAt: now.toISOString(),
        counters: null,
        lastAttestation: null,
        akQualifiedName: akQualifiedNameUnderEk(ek, akName).toString('hex'),
      };
      secret.fill(0);
      await this.#record({
        type: 'runtime.enroll',
        subject: runtimeId,
        decision: 'pending_activation',
        reasons: [rule === undefined ? 'rule:none' : `rule:${rule.name}`],
        digest: factsDigest({
          runtimeId,
          name,
          requestedLabels,
          labels: record.labels,
          rule: rule?.name ?? null,
          activationState: record.activationState,
          ekFingerprint: fingerprint,
          ekPublicKeySha256: identity.publicKeySha256,
          akName: record.akName,
          ekCertified: record.ekCertified,
        }),
        facts: runtimeEventFacts(record, { rule: rule?.name ?? null, labels: record.labels }),
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

  #pendingTtlMs(): number {
    return this.#config.pendingEnrollmentTtlMs ?? 15 * 60_000;
  }

  #expiresAt(r: RuntimeRecord): number | null {
    if (r.state !== 'pending_activation') return null;
    return Date.parse(r.createdAt) + this.#pendingTtlMs();
  }

  /**
   * The runtime `holderId` holds an EK or a name an enrollment wants: a pending enrollment
   * past its lifetime is deleted (audited) and frees both; anything else refuses with
   * `refusal(holder)`.
   */
  async #freeIfExpired(
    holderId: string | undefined,
    now: Date,
    refusal: (holder: RuntimeRecord) => Error,
  ): Promise<void> {
    if (holderId === undefined) return;
    await this.#serial(holderId, async () => {
      const holder = await this.#store.get(holderId);
      if (holder === undefined) return;
      const expiresAt = this.#expiresAt(holder);
      if (expiresAt === null || now.getTime() < expiresAt) throw refusal(holder);
      await this.#expire(holder);
    });
  }

  /** Delete an expired pending enrollment, audited first (its EK and name are free after). */
  async #expire(r: RuntimeRecord): Promise<void> {
    await this.#record({
      type: 'runtime.enroll_expired',
      subject: r.runtimeId,
      decision: 'expired',
      digest: factsDigest({ runtimeId: r.runtimeId, akName: r.akName, createdAt: r.createdAt }),
      facts: runtimeEventFacts(r),
    });
    await this.#write(r.runtimeId, () => this.#store.delete(r), undefined);
    this.#nonces.forget(r.runtimeId);
  }

  /**
   * One attempt: the secret is compared in constant time; a wrong one deletes the pending
   * enrollment (the runtime must enroll again) and says nothing about the expected value.
   * An enrollment past its lifetime is deleted (`enrollment_expired`) whatever the secret.
   */
  async activate(
    runtimeId: string,
    body: { secret: string },
  ): Promise<{ runtimeId: string; state: RuntimeState }> {
    const secretDigest = Buffer.from(sha256Hex(decode('secret', body.secret, 128)), 'hex');
    const now = this.#now();
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.state !== 'pending_activation' || r.secretDigest === null)
        throw new RuntimeStateInvalidError();
      const expiresAt = this.#expiresAt(r);
      if (expiresAt !== null && now.getTime() >= expiresAt) {
        await this.#expire(r);
        throw new EnrollmentExpiredError();
      }
      const expected = Buffer.from(r.secretDigest, 'hex');
      const ok = expected.length === secretDigest.length && timingSafeEqual(expected, secretDigest);
      // What the operators' rule decided at enrollment; a bare EK never activates itself.
      const state: RuntimeState = ok
        ? r.ekCertified || r.labelSource !== null
          ? r.activationState
          : 'pending_approval'
        : r.state;
      await this.#record({
        type: 'runtime.activate',
        subject: runtimeId,
        decision: ok ? state : 'activation_failed',
        ...(ok ? {} : { reasons: ['activation_failed'] }),
        digest: factsDigest({ runtimeId, akName: r.akName, ok }),
        facts: runtimeEventFacts(r),
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

  #view(r: RuntimeRecord): RuntimeView {
    const last = r.lastAttestation;
    const expiresAt = this.#expiresAt(r);
    return {
      runtimeId: r.runtimeId,
      name: r.name,
      labels: { ...r.labels },
      requestedLabels: { ...r.requestedLabels },
      labelSource: r.labelSource,
      state: r.state,
      ekCertified: r.ekCertified,
      ek: {
        publicKeySha256: r.ek?.publicKeySha256 ?? null,
        certificate:
          r.ek?.certificate == null
            ? null
            : { issuer: r.ek.certificate.issuer, serialNumber: r.ek.certificate.serialNumber },
        tpm: r.ek?.tpm == null ? null : { ...r.ek.tpm },
      },
      akName: r.akName,
      referencePolicy: policyForLabels(this.#config.referencePolicies, r.labels)?.name ?? null,
      createdAt: r.createdAt,
      pendingExpiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
      released: r.released === null ? null : { ...r.released },
      counters: r.counters === null ? null : { ...r.counters },
      lastQuote: r.lastQuote === undefined ? null : { ...r.lastQuote },
      lastAttestation: last === null ? null : { ...last, reasons: [...last.reasons] },
    };
  }

  async getRuntime(runtimeId: string): Promise<RuntimeView> {
    return this.#view(await this.#load(runtimeId));
  }

  /**
   * One page of the inventory, in runtime id order. A page reads at most a bounded number of
   * records however selective the filter: it may come back short (even empty) with a cursor,
   * so a filter matching nothing never scans the whole store in one request.
   */
  async listRuntimes(filter: RuntimeFilter): Promise<RuntimePage> {
    const runtimes: RuntimeView[] = [];
    let after = filter.after;
    let scanned = 0;
    while (runtimes.length < filter.limit && scanned < LIST_SCAN_LIMIT) {
      const batch = await this.#store.scan(after, Math.min(256, LIST_SCAN_LIMIT - scanned));
      if (batch.length === 0) return { runtimes, nextCursor: null };
      for (const r of batch) {
        scanned += 1;
        after = r.runtimeId;
        const view = this.#view(r);
        if (matchesFilter(view, filter)) runtimes.push(view);
        if (runtimes.length === filter.limit) break;
      }
    }
    return { runtimes, nextCursor: after ?? null };
  }

  /**
   * An operator assigns the labels policies see (audited before it takes effect). The
   * runtime's session ends: it attests again under its new identity, so the reference
   * policy it is verified against always follows the labels it is judged by.
   */
  async assignLabels(
    runtimeId: string,
    labels: Readonly<Record<string, string>>,
    actor: RuntimeActor,
  ): Promise<RuntimeView> {
    const next = { ...labels };
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.state === 'revoked') throw new RuntimeStateInvalidError();
      this.#endSession(runtimeId);
      await this.#record({
        type: 'runtime.labels.assign',
        subject: runtimeId,
        decision: 'assigned',
        reasons: [`${actor.role}:${actor.id}`],
        digest: factsDigest({ runtimeId, labels: next, previous: r.labels, by: actor.id }),
        facts: runtimeEventFacts(r, { actor: actor.id, labels: next }),
      });
      const updated: RuntimeRecord = { ...r, labels: next, labelSource: `operator:${actor.id}` };
      await this.#update(updated);
      return this.#view(updated);
    });
  }

  /**
   * An operator frees the EK and the name of a revoked runtime, or of an enrollment still
   * pending (revoking it): a revoked runtime's EK stays blocked until then, on purpose. The
   * record stays, marked released, for the inventory and the log.
   */
  async release(runtimeId: string, actor: RuntimeActor): Promise<RuntimeView> {
    return this.#serial(runtimeId, async () => {
      const r = await this.#load(runtimeId);
      if (r.released !== null || (r.state !== 'revoked' && r.state !== 'pending_activation'))
        throw new RuntimeStateInvalidError();
      this.#endSession(runtimeId);
      this.#nonces.forget(runtimeId);
      const at = this.#now().toISOString();
      await this.#record({
        type: 'runtime.release',
        subject: runtimeId,
        decision: 'released',
        reasons: [`${actor.role}:${actor.id}`],
        digest: factsDigest({
          runtimeId,
          ekFingerprint: r.ekFingerprint,
          name: r.name,
          by: actor.id,
          at,
        }),
        facts: runtimeEventFacts(r, { actor: actor.id }),
      });
      const updated: RuntimeRecord = {
        ...r,
        state: 'revoked',
        secretDigest: null,
        released: { at, by: actor.id },
      };
      await this.#write(runtimeId, () => this.#store.release(updated), updated);
      return this.#view(updated);
    });
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
        facts: runtimeEventFacts(r),
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
      await this.#record({
        type: 'runtime.revoke',
        subject: runtimeId,
        decision: 'revoked',
        digest: factsDigest({ runtimeId, akName: r.akName }),
        facts: runtimeEventFacts(r),
      });
      await this.#update({ ...r, state: 'revoked', secretDigest: null, imaState: null });
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

  async attest(
    runtimeId: string,
    body: QuoteRequest & { sessionKey: unknown } & MeasuredBootRequest,
  ): Promise<AttestationResponse> {
    const now = this.#now();
    const parsed = parseQuoteRequest(body);
    const sessionKey = parseSessionKey(body.sessionKey);
    const evidence = this.#measuredBoot.parse(body);
    const qd = qualifyingData(parsed.nonce, sessionKey);
    return this.#serial(runtimeId, async () => {
      const { record, policy, facts, measured } = await this.#verify(
        runtimeId,
        parsed,
        qd,
        now,
        'attest',
        evidence,
      );
      const attestationId = `at_${this.#random(16).toString('base64url')}`;
      const { trusted, reasons } = verdictOf(facts, measured.reasons);
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
          ...verdictFacts(record, attestationId, policy, facts),
          sessionKey,
          ...(measured.summary === undefined ? {} : { measuredBoot: measured.summary }),
        }),
        facts: verdictAuditFacts(record, attestationId, policy, facts),
      });
      await this.#recordFirmwareChange(record, facts);
      await this.#update({
        ...record,
        counters: { resetCount: facts.resetCount, restartCount: facts.restartCount },
        lastQuote: lastQuoteOf(facts),
        lastAttestation: { attestationId, verdict, reasons, at: now.toISOString() },
        // The IMA entries verified against this quote, written with the audited verdict.
        ...(measured.imaState === undefined ? {} : { imaState: measured.imaState }),
      });
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
    now: Date,
    /** The entry type's suffix: `runtime.attest` or `runtime.quote`. */
    kind: 'attest' | 'quote',
    evidence?: MeasuredBootEvidence,
  ): Promise<{
    record: RuntimeRecord;
    policy: ReferencePolicy;
    facts: QuoteFacts;
    measured: MeasuredBootOutcome;
  }> {
    const record = await this.#load(runtimeId);
    const policy = policyForLabels(this.#config.referencePolicies, record.labels);
    // Refused before the quote is looked at: audited as rejected, not authentic.
    const refuse = (e: GrantorError): Promise<never> =>
      this.#recordRejected(kind, record, policy, e.code, false).then(() => Promise.reject(e));
    if (record.state !== 'active') return refuse(new RuntimeStateInvalidError());
    if (policy === undefined) return refuse(new ReferencePolicyUnknownError());
    // An EK a CA vouched for stands only while the appliance trusts that CA: after an
    // operator replaced the bundle without it, the runtime's identity is vouched for by no one.
    if (!this.#ekChainTrusted(record)) {
      return refuse(
        new EkCertificateUntrustedError('the EK certificate no longer chains to a trusted CA'),
      );
    }
    const akPublic = this.#akPublic(record.akPublic);
    // Check, verify and consume in one synchronous step (no await between): of two attempts
    // with one nonce, the second sees it consumed.
    const nonceStatus = this.#nonces.check(runtimeId, parsed.nonce, now);
    try {
      const facts = verifyParsedQuote(parsed, {
        akPublic,
        qualifyingData: qd,
        nonceStatus,
        policy,
        previous:
          record.counters === null
            ? undefined
            : {
                ...record.counters,
                clock: record.lastQuote === undefined ? undefined : BigInt(record.lastQuote.clock),
              },
        expectedSigner:
          record.akQualifiedName === undefined
            ? undefined
            : Buffer.from(record.akQualifiedName, 'hex'),
      });
      // The event log and IMA list against the now authentic quote (measured-boot/).
      const measured = this.#measuredBoot.verify(
        evidence,
        parsed.values,
        facts,
        policy.measuredBoot,
        record.imaState,
      );
      if (nonceStatus === 'ok') this.#nonces.consume(runtimeId, parsed.nonce);
      return { record, policy, facts, measured };
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      // Signed by the runtime's AK, pass or fail: the nonce is spent.
      if (nonceStatus === 'ok' && typeof code === 'string' && !UNSIGNED_FAILURES.has(code))
        this.#nonces.consume(runtimeId, parsed.nonce);
      const authentic = typeof code === 'string' && AUTHENTIC_FAILURES.has(code);
      if (authentic) this.#endSession(runtimeId);
      await this.#recordRejected(kind, record, policy, code, authentic);
      throw e;
    }
  }

  /** The `runtime.attest` / `runtime.quote` entry of a refusal (fails closed: 503). */
  #recordRejected(
    kind: 'attest' | 'quote',
    record: RuntimeRecord,
    policy: ReferencePolicy | undefined,
    code: unknown,
    authentic: boolean,
  ): Promise<void> {
    return this.#record({
      type: `runtime.${kind}`,
      subject: record.runtimeId,
      decision: 'rejected',
      reasons: [typeof code === 'string' ? code : 'internal_error'],
      digest: factsDigest({
        runtimeId: record.runtimeId,
        akName: record.akName,
        code: typeof code === 'string' ? code : null,
      }),
      facts: rejectedAuditFacts(record, policy, code, authentic),
    });
  }

  #untrusted(attestationId: string, reasons: string[]): LastAttestation {
    return { attestationId, verdict: 'untrusted', reasons, at: this.#now().toISOString() };
  }

  /** A firmware version other than the last quote's is an audited fact of its own. */
  async #recordFirmwareChange(record: RuntimeRecord, facts: QuoteFacts): Promise<void> {
    const previous = record.lastQuote?.firmwareVersion;
    const current = firmwareHex(facts.firmwareVersion);
    if (previous === undefined || previous === current) return;
    await this.#record({
      type: 'runtime.firmware',
      subject: record.runtimeId,
      decision: 'changed',
      reasons: [`from:${previous}`, `to:${current}`],
      digest: factsDigest({
        runtimeId: record.runtimeId,
        akName: record.akName,
        previous,
        current,
      }),
      facts: {
        runtime: factId(record.runtimeId),
        akName: factText(record.akName),
        previous: factText(previous),
        current: factText(current),
      },
    });
  }

  // ---------------------------------------------------------------------------------------
  // Trust changes (issue 18): who rested on what an operator withdrew

  /** Every active runtime record, in id order (operator acts only: a full scan). */
  async #activeRecords(): Promise<RuntimeRecord[]> {
    const out: RuntimeRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#store.scan(after, 512);
      for (const r of page) if (r.state === 'active') out.push(r);
      const last = page.at(-1);
      if (page.length < 512 || last === undefined) return out;
      after = last.runtimeId;
    }
  }

  /**
   * The active runtimes whose attestation rests on reference policy `name`: those whose
   * labels select it among `policies` (the enabled set before the change: what their quotes
   * were verified against), and any whose live session was verified against it.
   */
  async runtimesOnReferencePolicy(
    name: string,
    policies: readonly ReferencePolicy[],
  ): Promise<string[]> {
    const ids = new Set<string>();
    for (const s of this.#sessions.values()) if (s.referencePolicy === name) ids.add(s.runtimeId);
    for (const r of await this.#activeRecords()) {
      if (policyForLabels(policies, r.labels)?.name === name) ids.add(r.runtimeId);
    }
    return [...ids].sort();
  }

  /**
   * The active runtimes enrolled with an EK certificate whose verified chain is no longer
   * wholly in `cas` (by SHA-256 of each CA certificate): their EK no longer chains to what
   * the appliance trusts. Runtimes enrolled with a bare EK key were vouched for by an
   * operator, not a CA, and are not affected.
   */
  async runtimesOutsideEkCas(cas: readonly X509Certificate[]): Promise<string[]> {
    const trusted = new Set(cas.map((c) => sha256Hex(c.raw)));
    const out: string[] = [];
    for (const r of await this.#activeRecords()) {
      const chain = r.ek?.certificate?.chainSha256;
      if (chain === undefined) continue;
      if (chain.length === 0 || !chain.every((h) => trusted.has(h))) out.push(r.runtimeId);
    }
    return out;
  }

  /** Whether the runtime's recorded EK chain (if it has one) is wholly in the trusted CAs. */
  #ekChainTrusted(record: RuntimeRecord): boolean {
    const chain = record.ek?.certificate?.chainSha256;
    if (chain === undefined) return true;
    const cas = this.#config.trustedEkCas;
    if (this.#caDigests?.cas !== cas) {
      this.#caDigests = { cas, digests: new Set(cas.map((c) => sha256Hex(c.raw))) };
    }
    const trusted = this.#caDigests.digests;
    return chain.length > 0 && chain.every((h) => trusted.has(h));
  }

  /** Ends the attested session of each runtime; how many were live. */
  endSessions(runtimeIds: readonly string[]): number {
    let ended = 0;
    for (const id of runtimeIds) {
      if (this.#sessionByRuntime.has(id)) ended += 1;
      this.#endSession(id);
      this.#nonces.forget(id);
    }
    return ended;
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
   * Quote-mode grants, in one call: verify `quote` for `runtimeId` against `qualifyingData`
   * (the grant request digest, §2) and answer with the verdict, the runtime as the verdict
   * left it and its live attested session (which holds the grant), all read in the
   * runtime's serial section. Consumes the nonce; throws on any failure, including the
   * state verdicts (pcr_policy_violation, tpm_reset_detected); an authentic untrusted quote
   * ends the runtime's session.
   */
  async proveQuote(
    runtimeId: string,
    quote: QuoteRequest & MeasuredBootRequest,
    qd: Uint8Array,
  ): Promise<QuoteProof> {
    const now = this.#now();
    const parsed = parseQuoteRequest(quote);
    // The quote's event log and IMA entries, parsed before the first await like the quote.
    const evidence = this.#measuredBoot.parse(quote);
    const expected = Buffer.from(qd);
    return this.#serial(runtimeId, async () => {
      const { record, policy, facts, measured } = await this.#verify(
        runtimeId,
        parsed,
        expected,
        now,
        'quote',
        evidence,
      );
      await this.#recordFirmwareChange(record, facts);
      // The verdict is recorded like an attestation's, before the grant answer: the entry,
      // the counters, and on a violation the runtime's standing and its session.
      const first: GrantorError | undefined =
        facts.violations[0] ??
        (measured.reasons.length > 0
          ? new MeasuredBootViolationError(measured.reasons)
          : undefined);
      const { reasons } = verdictOf(facts, measured.reasons);
      if (first !== undefined || facts.resetDetected) this.#endSession(runtimeId);
      const attestationId = `at_${this.#random(16).toString('base64url')}`;
      await this.#record({
        type: 'runtime.quote',
        subject: runtimeId,
        decision: first === undefined ? 'trusted' : 'untrusted',
        reasons,
        digest: factsDigest({
          ...verdictFacts(record, attestationId, policy, facts),
          qualifyingData: expected.toString('hex'),
          ...(measured.summary === undefined ? {} : { measuredBoot: measured.summary }),
        }),
        facts: verdictAuditFacts(record, attestationId, policy, facts),
      });
      // The stored IMA state is not moved here: the grant answer cannot tell the attester
      // where the verified entries end (docs/measured-boot.md).
      const next: RuntimeRecord = {
        ...record,
        counters: { resetCount: facts.resetCount, restartCount: facts.restartCount },
        lastQuote: lastQuoteOf(facts),
        // A trusted quote leaves the session's attestation as the runtime's standing (the
        // grant is bound to that session's key); an untrusted one replaces it.
        ...(first === undefined
          ? {}
          : { lastAttestation: this.#untrusted(attestationId, reasons) }),
      };
      await this.#update(next);
      if (first !== undefined) throw first;
      // The session of the runtime's standing attestation, if still live (a reset ended it).
      const standing = next.lastAttestation;
      const session = standing === null ? undefined : this.sessionFor(standing.attestationId);
      return {
        runtimeId,
        akName: record.akName,
        pcrDigestHex: facts.pcrDigest.toString('hex'),
        resetCount: facts.resetCount,
        restartCount: facts.restartCount,
        resetDetected: facts.resetDetected,
        runtime: this.#view(next),
        session: session?.runtimeId === runtimeId ? session : undefined,
      };
    });
  }
}
