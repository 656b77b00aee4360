/**
 * The runtime-side attester (PROTOCOL.md §1-§2) over our TPM facade (src/tpm): creates or
 * reuses an AK under the RSA EK, enrolls with the EK certificate, activates the credential,
 * and answers challenges with quotes that vouch for a fresh EC P-256 session key. It never
 * imports the appliance's services: the qualifying data is computed here from the spec.
 */
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import type { GrantRequestBody } from '../src/shared/grant-request.js';
import { jcs } from '../src/shared/jcs.js';
import { marshalTpmtPublic } from '../src/tpm/marshal/public.js';
import { AK_TEMPLATE_ECC_P256, EK_HANDLES } from '../src/tpm/templates.js';
import type { CreatedObject, PcrBankSelection, TpmPort } from '../src/tpm/tpm.port.js';

export interface SessionJwk {
  readonly kty: 'EC';
  readonly crv: 'P-256';
  readonly x: string;
  readonly y: string;
}

/** What the attester keeps between runs (no secrets: the AK private blob is TPM-wrapped). */
export interface AttesterState {
  readonly runtimeId?: string;
  readonly ak?: { readonly private: string; readonly public: string };
}

export interface AttestResult {
  readonly attestationId: string;
  readonly verdict: 'trusted' | 'untrusted';
  readonly reasons: readonly string[];
  readonly validUntil: string | null;
  readonly pcrDigestHex: string;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly measuredBoot?: { readonly events: number; readonly imaEntries: number };
}

/**
 * Where the attester reads measured-boot evidence, after the quote (so the IMA list holds
 * at least what the quote covers): the TCG event log (binary_bios_measurements) and the
 * IMA list in ASCII (ascii_runtime_measurements), whole; only new lines are sent.
 */
export interface MeasuredBootSource {
  readonly eventLog?: () => Promise<Buffer>;
  readonly imaAscii?: () => Promise<Buffer>;
}

export class AttesterError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** `SHA-256(nonce ‖ SHA-256(JCS(bound)))` (PROTOCOL.md §2). */
export function qualifyingData(nonce: Uint8Array, bound: unknown): Buffer {
  const inner = createHash('sha256').update(jcs(bound), 'utf8').digest();
  return createHash('sha256').update(nonce).update(inner).digest();
}

const EK = EK_HANDLES.rsa2048;

export interface AttesterOptions {
  /** The appliance, e.g. http://127.0.0.1:8443 */
  readonly url: string;
  readonly fetch?: typeof fetch;
}

/** A grant request body (PROTOCOL.md §3) before its proof is attached (shared with the appliance). */
export type { GrantRequestBody };

/**
 * Session mode (§3) for any request body: ES256 (r‖s, base64url) with the session key `key`
 * of the attested session `attestationId` over JCS(request without session.signature).
 */
export function signSessionRequest<T extends object>(
  body: T,
  attestationId: string,
  key: KeyObject,
): T & { session: { attestationId: string; signature: string } } {
  const unsigned = { ...body, session: { attestationId } };
  const signature = sign('sha256', Buffer.from(jcs(unsigned), 'utf8'), {
    key,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  return { ...body, session: { attestationId, signature } };
}

export interface GrantAnswer {
  readonly grantId: string;
  readonly grant: string;
  readonly expiresAt: string;
  readonly auditSeq: number;
}

const DEFAULT_PCRS: readonly PcrBankSelection[] = [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 7] }];

export class Attester {
  #state: AttesterState;
  #sessionKey: KeyObject | undefined;
  #attestationId: string | undefined;

  readonly #tpm: TpmPort;
  readonly #options: AttesterOptions;
  constructor(tpm: TpmPort, options: AttesterOptions, state: AttesterState = {}) {
    this.#tpm = tpm;
    this.#options = options;
    this.#state = { ...state };
  }

  get state(): AttesterState {
    return { ...this.#state };
  }

  /** The private session key of the last attestation (to sign grant requests), if any. */
  get sessionPrivateKey(): KeyObject | undefined {
    return this.#sessionKey;
  }

  async #call<T>(path: string, body?: unknown): Promise<T> {
    const f = this.#options.fetch ?? fetch;
    const res = await f(`${this.#options.url}${path}`, {
      method: 'POST',
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as {
      error?: { code?: string; message?: string; details?: Record<string, unknown> };
    };
    if (!res.ok)
      throw new AttesterError(
        `${path}: ${res.status} ${json.error?.message ?? ''}`,
        res.status,
        json.error?.code,
        json.error?.details,
      );
    return json as T;
  }

  /** Create the AK under the RSA EK once; reuse it afterwards. */
  async ensureAk(): Promise<CreatedObject> {
    const saved = this.#state.ak;
    if (saved !== undefined)
      return {
        private: Buffer.from(saved.private, 'base64'),
        public: Buffer.from(saved.public, 'base64'),
      };
    const ak = await this.#tpm.create(EK.persistent, marshalTpmtPublic(AK_TEMPLATE_ECC_P256), {
      parentAuth: { ekPolicy: true },
    });
    this.#state = {
      ...this.#state,
      ak: { private: ak.private.toString('base64'), public: ak.public.toString('base64') },
    };
    return ak;
  }

  async #withAk<T>(use: (handle: number) => Promise<T>): Promise<T> {
    const ak = await this.ensureAk();
    return this.#tpm.withLoaded(
      () => this.#tpm.load(EK.persistent, ak, { parentAuth: { ekPolicy: true } }),
      (loaded) => use(loaded.handle),
    );
  }

  /** Enroll with the EK certificate and activate the credential: returns the runtime state. */
  async enroll(name: string, labels: Record<string, string> = {}): Promise<string> {
    const ak = await this.ensureAk();
    const ekCertificate = await this.#tpm.nvRead(EK.certNvIndex);
    const enrolled = await this.#call<{
      runtimeId: string;
      credentialBlob: string;
      encryptedSecret: string;
    }>('/v1/runtimes', {
      name,
      labels,
      ekCertificate: ekCertificate.toString('base64'),
      akPublic: ak.public.toString('base64'),
    });
    this.#state = { ...this.#state, runtimeId: enrolled.runtimeId };
    const secret = await this.#withAk((akHandle) =>
      this.#tpm.activateCredential(
        akHandle,
        EK.persistent,
        Buffer.from(enrolled.credentialBlob, 'base64'),
        Buffer.from(enrolled.encryptedSecret, 'base64'),
      ),
    );
    try {
      const activated = await this.#call<{ state: string }>(
        `/v1/runtimes/${enrolled.runtimeId}/activation`,
        { secret: secret.toString('base64') },
      );
      return activated.state;
    } finally {
      secret.fill(0);
    }
  }

  #runtimeId(): string {
    const runtimeId = this.#state.runtimeId;
    if (runtimeId === undefined) throw new AttesterError('not enrolled', 0, undefined);
    return runtimeId;
  }

  /** A fresh challenge answered by a quote over `bound` (§2 qualifying data): the quote body. */
  async #quote(
    bound: unknown,
    selection: readonly PcrBankSelection[],
  ): Promise<{
    nonce: string;
    quote: string;
    signature: string;
    pcrs: Record<string, Record<string, string>>;
  }> {
    const runtimeId = this.#runtimeId();
    const { nonce } = await this.#call<{ nonce: string }>(`/v1/runtimes/${runtimeId}/challenges`);
    const qd = qualifyingData(Buffer.from(nonce, 'base64'), bound);
    const pcrs = await this.#tpm.pcrRead(selection);
    const quote = await this.#withAk((akHandle) => this.#tpm.quote(akHandle, selection, qd));
    const values: Record<string, Record<string, string>> = {};
    for (const v of pcrs.values) (values[v.bank] ??= {})[String(v.pcr)] = v.digest.toString('hex');
    return {
      nonce,
      quote: quote.attest.toString('base64'),
      signature: quote.signature.toString('base64'),
      pcrs: values,
    };
  }

  /** IMA entries the appliance has verified (the offset of the next list sent). */
  #imaNext = 0;

  /** Measured-boot members of the attestation body, read after the quote. */
  async #measuredBoot(source: MeasuredBootSource | undefined): Promise<Record<string, unknown>> {
    if (source === undefined) return {};
    const out: Record<string, unknown> = {};
    if (source.eventLog !== undefined) out.eventLog = (await source.eventLog()).toString('base64');
    if (source.imaAscii !== undefined) {
      const lines = (await source.imaAscii()).toString('latin1').split('\n');
      if (lines.at(-1) === '') lines.pop();
      const fresh = lines.slice(this.#imaNext);
      out.ima = {
        offset: this.#imaNext,
        format: 'ascii',
        log: Buffer.from(fresh.join('\n'), 'latin1').toString('base64'),
      };
    }
    return out;
  }

  /**
   * Challenge, quote with a fresh session key, and submit, with the event log and the new
   * IMA entries when `measured` says where to read them. When the appliance expects the IMA
   * list from another offset (after a reboot or its restart), attest once more from there.
   */
  async attest(
    selection: readonly PcrBankSelection[] = DEFAULT_PCRS,
    measured?: MeasuredBootSource,
  ): Promise<AttestResult> {
    try {
      return await this.#attestOnce(selection, measured);
    } catch (e) {
      const expected = e instanceof AttesterError ? e.details?.expected : undefined;
      if (!(e instanceof AttesterError) || e.code !== 'ima_log_offset_invalid') throw e;
      if (typeof expected !== 'number') throw e;
      this.#imaNext = expected;
      return this.#attestOnce(selection, measured);
    }
  }

  async #attestOnce(
    selection: readonly PcrBankSelection[],
    measured: MeasuredBootSource | undefined,
  ): Promise<AttestResult> {
    const runtimeId = this.#runtimeId();
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = publicKey.export({ format: 'jwk' });
    const sessionKey: SessionJwk = { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
    const quote = await this.#quote(sessionKey, selection);
    const result = await this.#call<AttestResult>(`/v1/runtimes/${runtimeId}/attestations`, {
      ...quote,
      sessionKey,
      ...(await this.#measuredBoot(measured)),
    });
    if (result.measuredBoot !== undefined) this.#imaNext = result.measuredBoot.imaEntries;
    const trusted = result.verdict === 'trusted';
    this.#sessionKey = trusted ? privateKey : undefined;
    this.#attestationId = trusted ? result.attestationId : undefined;
    return result;
  }

  /**
   * Session mode (§3): the request signed with the attested session key, ES256 (r‖s,
   * base64url) over JCS(request without session.signature). Costs no TPM operation.
   */
  sessionSigned(
    body: GrantRequestBody,
  ): GrantRequestBody & { session: { attestationId: string; signature: string } } {
    const key = this.#sessionKey;
    const attestationId = this.#attestationId;
    if (key === undefined || attestationId === undefined)
      throw new AttesterError('no attested session: attest first', 0, undefined);
    return signSessionRequest(body, attestationId, key);
  }

  /**
   * Proof of possession of the session key for a gateway (§3, `cnf.jkt`): ES256 (r‖s,
   * base64url) over JCS({typ: "grantor-pop/v1", aud, jti, challenge}), with the session's
   * public JWK. `header` is the example gateway's `Grant-PoP` value: base64url of the JSON
   * `{challenge, signature, publicKey}`. The private key never leaves this object.
   */
  proofOfPossession(input: { audience: string; grantId: string; challenge: string }): {
    challenge: string;
    signature: string;
    publicKey: SessionJwk;
    header: string;
  } {
    const key = this.#sessionKey;
    if (key === undefined)
      throw new AttesterError('no attested session: attest first', 0, undefined);
    const signingInput = jcs({
      typ: 'grantor-pop/v1',
      aud: input.audience,
      jti: input.grantId,
      challenge: input.challenge,
    });
    const signature = sign('sha256', Buffer.from(signingInput, 'utf8'), {
      key,
      dsaEncoding: 'ieee-p1363',
    }).toString('base64url');
    const jwk = createPublicKey(key).export({ format: 'jwk' });
    const publicKey: SessionJwk = { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' };
    const header = Buffer.from(
      JSON.stringify({ challenge: input.challenge, signature, publicKey }),
      'utf8',
    ).toString('base64url');
    return { challenge: input.challenge, signature, publicKey, header };
  }

  /**
   * Quote mode (§3): a fresh quote qualified with the digest of this very request, with the
   * event log and the IMA entries since the last attestation when `measured` says where to
   * read them (read after the quote, as for an attestation; not part of the digest: the
   * replay binds them to the quote).
   */
  async quoted(
    body: GrantRequestBody,
    selection: readonly PcrBankSelection[] = DEFAULT_PCRS,
    measured?: MeasuredBootSource,
  ): Promise<GrantRequestBody & { quote: unknown }> {
    const quote = await this.#quote(body, selection);
    return { ...body, quote: { ...quote, ...(await this.#measuredBoot(measured)) } };
  }

  /** POST /v1/grants in session mode (default) or quote mode. */
  async requestGrant(
    body: GrantRequestBody,
    mode: 'session' | 'quote' = 'session',
    options: {
      readonly selection?: readonly PcrBankSelection[];
      readonly measured?: MeasuredBootSource;
    } = {},
  ): Promise<GrantAnswer> {
    const request =
      mode === 'session'
        ? this.sessionSigned(body)
        : await this.quoted(body, options.selection, options.measured);
    return this.#call<GrantAnswer>('/v1/grants', request);
  }
}
