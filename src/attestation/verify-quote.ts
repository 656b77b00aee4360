/**
 * Quote verification (PROTOCOL.md §2): parse the request, then a flat list of guard clauses
 * in a fixed order, each failing with its own error. Pure: the nonce status, the expected
 * qualifying data, the reference policy, the previous counters and `now` are inputs.
 *
 *   magic → type QUOTE → signature scheme/hash = AK's, signature verifies (ECDSA r, s in
 *   range) → extraData = qualifying data → nonce issued/unexpired/unused
 *   → qualifiedSigner = AK under its EK (where known) → signed selection = claimed selection
 *   → banks allowed → policy PCRs covered → digest of values = pcrDigest → values vs policy
 *   (collected) → counters never decrease → clock never goes back within a boot → clock safe
 *   → reset (policy) → firmware version (policy).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { unmarshalTpmsAttest, type TpmsAttest } from '../tpm/marshal/attest.js';
import {
  TPM_GENERATED_VALUE,
  TPM_ST,
  hashInfo,
  hashInfoByName,
  type HashName,
} from '../tpm/marshal/constants.js';
import {
  pcrDigest,
  pcrSelectionToList,
  type PcrSelection,
  type PcrValues,
} from '../tpm/marshal/pcr-selection.js';
import { unmarshalTpmtSignature, type TpmtSignature } from '../tpm/marshal/signature.js';
import {
  TpmSignatureHashMismatchError,
  TpmSignatureOutOfRangeError,
  TpmSignatureSchemeMismatchError,
  verifyTpmtSignature,
} from '../tpm/marshal/verify.js';
import type { AkPublic } from './ak.js';
import {
  NonceExpiredError,
  NonceReusedError,
  NonceUnknownError,
  PcrBankNotAllowedError,
  PcrDigestMismatchError,
  PcrPolicyViolationError,
  PcrSelectionIncompleteError,
  PcrSelectionMismatchError,
  QuoteMagicError,
  QuoteMalformedError,
  QuoteNonceMismatchError,
  QuoteSignatureInvalidError,
  QuoteSignatureRangeError,
  QuoteSignatureSchemeError,
  QuoteTypeError,
  QuoteSignerMismatchError,
  TpmClockRollbackError,
  TpmClockUnsafeError,
  TpmCounterRollbackError,
  TpmFirmwareRefusedError,
  TpmResetDetectedError,
} from './errors.js';
import { jcs } from '../shared/jcs.js';
import type { NonceStatus } from './nonces.js';
import { firmwareRefused, type ReferencePolicy } from './reference-policy.js';

export { jcs };

/** `SHA-256(nonce ‖ SHA-256(JCS(bound)))`: the session key (attestation) or request (grant). */
export function qualifyingData(nonce: Uint8Array, bound: unknown): Buffer {
  const inner = createHash('sha256').update(jcs(bound), 'utf8').digest();
  return createHash('sha256').update(nonce).update(inner).digest();
}

/** The quote members of a request body, as received (untrusted). */
export interface QuoteRequest {
  readonly nonce: string;
  readonly quote: string;
  readonly signature: string;
  readonly pcrs: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** A parsed, private copy of a quote request. */
export interface ParsedQuote {
  readonly nonce: Buffer;
  readonly attestBytes: Buffer;
  readonly attest: TpmsAttest;
  readonly signature: TpmtSignature;
  /** Claimed PCR values by bank and index. */
  readonly values: PcrValues;
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64(value: unknown, field: string, max: number): Buffer {
  if (typeof value !== 'string' || value.length > max || !B64.test(value))
    throw new QuoteMalformedError(`${field} is not standard base64`, { details: { field } });
  return Buffer.from(value, 'base64');
}

/**
 * Copy and parse the untrusted request synchronously (call before any await): afterwards
 * nothing the caller holds can change what is verified.
 */
export function parseQuoteRequest(req: QuoteRequest): ParsedQuote {
  const nonce = base64(req.nonce, 'nonce', 64);
  const attestBytes = base64(req.quote, 'quote', 4096);
  const sigBytes = base64(req.signature, 'signature', 2048);
  let attest: TpmsAttest;
  let signature: TpmtSignature;
  try {
    attest = unmarshalTpmsAttest(attestBytes);
  } catch (e) {
    throw new QuoteMalformedError('quote is not a TPMS_ATTEST', {
      cause: e,
      details: { field: 'quote' },
    });
  }
  try {
    signature = unmarshalTpmtSignature(sigBytes);
  } catch (e) {
    throw new QuoteMalformedError('signature is not a TPMT_SIGNATURE', {
      cause: e,
      details: { field: 'signature' },
    });
  }
  const pcrs = req.pcrs as unknown;
  if (typeof pcrs !== 'object' || pcrs === null || Array.isArray(pcrs))
    throw new QuoteMalformedError('pcrs must be an object', { details: { field: 'pcrs' } });
  const values: Partial<Record<HashName, Record<number, Buffer>>> = {};
  for (const [bank, byIndex] of Object.entries(pcrs as Record<string, unknown>)) {
    const info = hashInfoByName(bank);
    if (info === undefined)
      throw new QuoteMalformedError(`unknown PCR bank ${bank.slice(0, 16)}`, {
        details: { field: 'pcrs' },
      });
    if (typeof byIndex !== 'object' || byIndex === null || Array.isArray(byIndex))
      throw new QuoteMalformedError(`pcrs.${info.name} must be an object`, {
        details: { field: 'pcrs' },
      });
    const bankValues: Record<number, Buffer> = {};
    for (const [index, hex] of Object.entries(byIndex as Record<string, unknown>)) {
      if (!/^(0|[1-9][0-9]?)$/.test(index) || Number(index) > 31)
        throw new QuoteMalformedError('PCR index is not 0..31', { details: { field: 'pcrs' } });
      if (typeof hex !== 'string' || hex.length !== info.size * 2 || !/^[0-9a-fA-F]+$/.test(hex))
        throw new QuoteMalformedError(
          `PCR ${info.name}:${index} is not ${info.size} bytes of hex`,
          {
            details: { field: 'pcrs' },
          },
        );
      bankValues[Number(index)] = Buffer.from(hex, 'hex');
    }
    values[info.name] = bankValues;
  }
  return { nonce, attestBytes, attest, signature, values };
}

export interface PreviousCounters {
  readonly resetCount: number;
  readonly restartCount: number;
  /** TPM clock (ms) of the last verified quote, where recorded. */
  readonly clock?: bigint | undefined;
}

export interface VerifyQuoteContext {
  readonly akPublic: AkPublic;
  /** What extraData must be (see qualifyingData). */
  readonly qualifyingData: Uint8Array;
  /** The nonce store's answer for this runtime and nonce (consumed before verification). */
  readonly nonceStatus: NonceStatus;
  readonly policy: ReferencePolicy;
  /** The counters of this AK's last verified quote, if any. */
  readonly previous: PreviousCounters | undefined;
  /**
   * The AK's qualified name (TPM2B_NAME) where its parent is known (the AK under the EK,
   * computed at enrollment): the quote's qualifiedSigner must be it.
   */
  readonly expectedSigner?: Uint8Array | undefined;
}

export type StateViolation =
  PcrPolicyViolationError | TpmResetDetectedError | TpmFirmwareRefusedError;

/** What a verified quote establishes. */
export interface QuoteFacts {
  readonly pcrDigest: Buffer;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly clock: bigint;
  /** TPMS_ATTEST.firmwareVersion (vendor-specific uint64). */
  readonly firmwareVersion: bigint;
  /** The TPM was reset (resetCount increased) or restarted since the last quote. */
  readonly resetDetected: boolean;
  readonly restartDetected: boolean;
  /** State failures of an authentic, fresh quote (the verdict is untrusted when non-empty). */
  readonly violations: readonly StateViolation[];
}

/** The recorded form of a firmware version: 16 lower-case hex characters. */
export function firmwareHex(version: bigint): string {
  return version.toString(16).padStart(16, '0');
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function selectionMap(sel: readonly PcrSelection[]): Map<HashName, Set<number>> | undefined {
  const out = new Map<HashName, Set<number>>();
  for (const { bank, pcrs } of pcrSelectionToList(sel)) {
    if (out.has(bank)) return undefined; // a bank listed twice: ambiguous, refused
    out.set(bank, new Set(pcrs));
  }
  return out;
}

function sameSelection(signed: Map<HashName, Set<number>>, values: PcrValues): boolean {
  const claimed = Object.entries(values).filter(([, v]) => Object.keys(v).length > 0);
  const nonEmptySigned = [...signed].filter(([, s]) => s.size > 0);
  if (claimed.length !== nonEmptySigned.length) return false;
  for (const [bank, pcrs] of nonEmptySigned) {
    const v = values[bank];
    if (v === undefined || Object.keys(v).length !== pcrs.size) return false;
    for (const p of pcrs) if (v[p] === undefined) return false;
  }
  return true;
}

/**
 * Verify a parsed quote. Throws the first failing guard's error; returns the facts, with
 * the policy's state verdicts (PCR values, reset) collected in `violations`.
 */
export function verifyParsedQuote(q: ParsedQuote, ctx: VerifyQuoteContext): QuoteFacts {
  const a = q.attest;
  // Only the TPM writes TPM_GENERATED_VALUE into what it signs: anything else is external data.
  if (a.magic !== TPM_GENERATED_VALUE) throw new QuoteMagicError();
  // A CERTIFY or NV attestation signed by the same AK is not a statement about PCRs.
  if (a.attested.type !== TPM_ST.ATTEST_QUOTE) throw new QuoteTypeError();
  const attested = a.attested;
  try {
    verifyTpmtSignature(ctx.akPublic, q.signature, q.attestBytes);
  } catch (e) {
    if (e instanceof TpmSignatureSchemeMismatchError || e instanceof TpmSignatureHashMismatchError)
      throw new QuoteSignatureSchemeError(undefined, { cause: e });
    if (e instanceof TpmSignatureOutOfRangeError)
      throw new QuoteSignatureRangeError(undefined, { cause: e });
    throw new QuoteSignatureInvalidError(undefined, { cause: e });
  }
  // Binds the quote to this challenge and to the session key (or grant request).
  if (!equalBytes(a.extraData, ctx.qualifyingData)) throw new QuoteNonceMismatchError();
  if (ctx.nonceStatus === 'unknown') throw new NonceUnknownError();
  if (ctx.nonceStatus === 'expired') throw new NonceExpiredError();
  if (ctx.nonceStatus === 'reused') throw new NonceReusedError();
  // The TPM names the signing key by its place in the hierarchy: an AK that is not the child
  // of the EK it was enrolled with is not the key the enrollment vouched for.
  if (ctx.expectedSigner !== undefined && !equalBytes(a.qualifiedSigner, ctx.expectedSigner))
    throw new QuoteSignerMismatchError();

  // PCR relabelling: values must be claimed for exactly the PCRs the TPM signed.
  const signed = selectionMap(attested.pcrSelect);
  if (signed === undefined || !sameSelection(signed, q.values))
    throw new PcrSelectionMismatchError();
  for (const [bank, pcrs] of signed) {
    if (pcrs.size > 0 && !ctx.policy.pcrs.has(bank))
      throw new PcrBankNotAllowedError(undefined, { details: { bank } });
  }
  for (const [bank, required] of ctx.policy.pcrs) {
    const covered = signed.get(bank);
    const missing = [...required.keys()].filter((p) => covered?.has(p) !== true);
    if (missing.length > 0)
      throw new PcrSelectionIncompleteError(undefined, { details: { bank, missing } });
  }
  // The TPM hashes the selected values, in selection order, with the signing hash.
  const digestAlg = hashInfo(q.signature.hash);
  if (digestAlg === undefined) throw new QuoteSignatureSchemeError();
  const digest = pcrDigest(digestAlg.id, attested.pcrSelect, q.values);
  if (!equalBytes(digest, attested.pcrDigest)) throw new PcrDigestMismatchError();

  const violations: StateViolation[] = [];
  const failing: string[] = [];
  for (const [bank, byIndex] of ctx.policy.pcrs) {
    for (const [pcr, allowed] of byIndex) {
      const v = q.values[bank]?.[pcr];
      if (v === undefined || !allowed.has(Buffer.from(v).toString('hex')))
        failing.push(`${bank}:${pcr}`);
    }
  }
  if (failing.length > 0)
    violations.push(new PcrPolicyViolationError(undefined, { details: { pcrs: failing } }));

  const { resetCount, restartCount, safe, clock } = a.clockInfo;
  const prev = ctx.previous;
  // A counter going backwards means a replayed quote from an earlier boot or a rolled-back TPM.
  if (
    prev !== undefined &&
    (resetCount < prev.resetCount ||
      (resetCount === prev.resetCount && restartCount < prev.restartCount))
  )
    throw new TpmCounterRollbackError();
  // Within one boot the clock only advances: an earlier clock is an older quote held back.
  if (
    prev?.clock !== undefined &&
    resetCount === prev.resetCount &&
    restartCount === prev.restartCount &&
    clock < prev.clock
  )
    throw new TpmClockRollbackError();
  // Unsafe: the clock may have gone backwards, so counters and clock cannot be trusted.
  if (!safe) throw new TpmClockUnsafeError();
  const resetDetected = prev !== undefined && resetCount > prev.resetCount;
  const restartDetected = prev !== undefined && !resetDetected && restartCount > prev.restartCount;
  if (resetDetected && !ctx.policy.allowReset) violations.push(new TpmResetDetectedError());
  if (firmwareRefused(ctx.policy, a.firmwareVersion))
    violations.push(
      new TpmFirmwareRefusedError(undefined, {
        details: { firmwareVersion: firmwareHex(a.firmwareVersion) },
      }),
    );
  return {
    pcrDigest: Buffer.from(attested.pcrDigest),
    resetCount,
    restartCount,
    clock,
    firmwareVersion: a.firmwareVersion,
    resetDetected,
    restartDetected,
    violations,
  };
}
