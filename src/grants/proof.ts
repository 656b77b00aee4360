/**
 * The proof of a grant request: a live session's signature over the request, or a TPM
 * quote qualified with it. Either way the grant is held by the key of the runtime's live
 * attested session (`cnf`).
 */
import { createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { qualifyingData, type EcSessionJwk } from '../attestation/index.js';
import { jwkThumbprint } from '../shared/grant-claims.js';
import type { GrantsDeps, RuntimeView } from './context.js';
import {
  RequestSignatureInvalidError,
  SessionNotLiveError,
  SessionRuntimeMismatchError,
} from './errors.js';
import { sessionSigningInput, withoutQuote, type CheckedRequest } from './request.js';

export interface Proven {
  /** The runtime the decision sees: as the gate read it, or as a quote's verdict left it. */
  readonly runtime: RuntimeView;
  readonly akName: string;
  readonly pcrDigest: string;
  readonly resetCount: number;
  readonly restartCount: number;
  /** The attestation whose session key holds the grant (`cnf`). */
  readonly attestationId: string | null;
  /** RFC 7638 thumbprint of the session key that holds the grant (its `cnf.jkt`). */
  readonly jkt: string;
  readonly resetSeen: boolean;
  readonly sessionAgeSeconds: number;
  /**
   * JCS(request without signatures) when the proof already made it: in session mode the
   * signed bytes are exactly that text (the body has no `quote`), which the audit entry
   * keeps, so the request is canonicalised once per grant.
   */
  readonly unsignedText?: string;
}

interface SessionKeyEntry {
  /** The JWK members the entry was made from. */
  readonly members: string;
  readonly key: KeyObject;
  readonly jkt: Promise<string>;
}

/** An attestation's reasons report a TPM reset or restart (the policy's `resetSeen`). */
const resetReported = (reasons: readonly string[]): boolean =>
  reasons.includes('tpm_reset_detected') || reasons.includes('tpm_restart_detected');

export class RequestProver {
  readonly #attestation: GrantsDeps['attestation'];
  /**
   * Session public keys, imported once per session (the JWK import was ~1/3 of a verify),
   * and their thumbprints (WebCrypto's digest per grant was ~5% of the event loop).
   */
  readonly #sessionKeys = new WeakMap<EcSessionJwk, SessionKeyEntry>();

  constructor(attestation: GrantsDeps['attestation']) {
    this.#attestation = attestation;
  }

  /** Proof of the request: a live session's signature, or a quote over the request. */
  async prove(req: CheckedRequest, runtime: RuntimeView, nowMs: number): Promise<Proven> {
    const attestation = this.#attestation;
    if (req.proof.mode === 'session') {
      const session = attestation.sessionFor(req.proof.attestationId);
      if (session === undefined) throw new SessionNotLiveError();
      // A session opened by one runtime never speaks for another.
      if (session.runtimeId !== req.runtimeId) throw new SessionRuntimeMismatchError();
      const last = runtime.lastAttestation;
      // Every attestation ends the previous session: a live one is the runtime's latest.
      if (last?.attestationId !== session.attestationId) throw new SessionNotLiveError();
      const signed = sessionSigningInput(req.body);
      const sessionKey = this.#sessionKey(session.sessionKey);
      let valid: boolean;
      try {
        valid = verifySignature(
          'sha256',
          Buffer.from(signed, 'utf8'),
          { key: sessionKey.key, dsaEncoding: 'ieee-p1363' },
          Buffer.from(req.proof.signature, 'base64url'),
        );
      } catch {
        valid = false;
      }
      if (!valid) throw new RequestSignatureInvalidError();
      return {
        runtime,
        akName: session.akName,
        pcrDigest: session.pcrDigestHex,
        resetCount: session.resetCount,
        restartCount: session.restartCount,
        attestationId: session.attestationId,
        jkt: await sessionKey.jkt,
        resetSeen: resetReported(last.reasons),
        sessionAgeSeconds: Math.max(0, Math.floor((nowMs - Date.parse(last.at)) / 1000)),
        unsignedText: signed,
      };
    }
    // Quote mode: the quote is qualified with SHA-256(nonce || SHA-256(JCS(request - quote))).
    const quote = req.proof.quote;
    const qd = qualifyingData(Buffer.from(quote.nonce, 'base64'), withoutQuote(req.body));
    // One call: the verdict, the runtime as it left it and its live session, read together.
    const proof = await attestation.proveQuote(req.runtimeId, quote, qd);
    // The grant is held by the session key of the runtime's live attested session, which the
    // same AK vouched for: without one there is no key to bind the grant to (cnf).
    const { session } = proof;
    const last = proof.runtime.lastAttestation;
    if (session === undefined || last?.attestationId !== session.attestationId) {
      throw new SessionNotLiveError('quote mode needs a live attested session to hold the grant');
    }
    return {
      runtime: proof.runtime,
      akName: proof.akName,
      pcrDigest: proof.pcrDigestHex,
      resetCount: proof.resetCount,
      restartCount: proof.restartCount,
      attestationId: session.attestationId,
      jkt: await this.#sessionKey(session.sessionKey).jkt,
      // As in session mode, the session's attestation reported a reset or restart; or the
      // quote shows one since that attestation (a restart leaves the session live; a reset
      // ends it, and the session check above refuses).
      resetSeen:
        resetReported(last.reasons) ||
        proof.resetCount !== session.resetCount ||
        proof.restartCount !== session.restartCount,
      sessionAgeSeconds: 0,
    };
  }

  /**
   * The session key as a KeyObject and its thumbprint, cached per session; checked against
   * the JWK's members each time, so a changed member is never served from the cache.
   */
  #sessionKey(jwk: EcSessionJwk): SessionKeyEntry {
    const members = `${jwk.kty}.${jwk.crv}.${jwk.x}.${jwk.y}`;
    const cached = this.#sessionKeys.get(jwk);
    if (cached?.members === members) return cached;
    const entry: SessionKeyEntry = {
      members,
      key: createPublicKey({ key: { ...jwk }, format: 'jwk' }),
      jkt: jwkThumbprint(jwk),
    };
    // A thumbprint that failed is not kept: the next request computes it again.
    entry.jkt.catch(() => {
      if (this.#sessionKeys.get(jwk) === entry) this.#sessionKeys.delete(jwk);
    });
    this.#sessionKeys.set(jwk, entry);
    return entry;
  }
}
