/**
 * The appliance's verifier side of attestation (the runtime side is attester/ at the top of
 * the repository): one `createAttestation(config, deps)`, plain arguments. Export surface for
 * the HTTP routes and for grants (sessionFor; proveQuote, quote mode in one call).
 * See docs/attestation.md and docs/measured-boot.md.
 *
 * Rooms: service.ts (the registrar and attested sessions: enrollment, activation, challenges,
 * attestations), verify-quote.ts (the quote's guard clauses, pure), quote-evidence.ts (the
 * one wire schema of a quote), nonces.ts (stateless MAC-ed challenges); at enrollment
 * ek-certificate.ts (the EK chain and the EK public), der.ts (the DER the X.509 API does not
 * reach), ak.ts (the AK's guard clauses), curves.ts (the EK/AK curves), roca.ts (weak RSA
 * moduli), make-credential.ts (TPM2_MakeCredential in software), enrollment-rules.ts
 * (operators decide labels and activation); trust: registrar.ts (EK CA bundle and reference
 * policies under dual control), reference-policy.ts with reference-policy-versions.ts;
 * measured-boot/ (TCG event log and IMA replay, the policy's rules, learning golden values);
 * runtime-store.port.ts with runtime-store.level.ts and its fake runtime-store.memory.ts;
 * errors.ts (one class per failure kind); config.ts (GRANTOR_EK_CA_BUNDLE, reference
 * policies, enrollment rules, log sizes); testing/ (a software TPM and fakes, for tests).
 */
import type { Database } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { parseCaBundle } from './ek-certificate.js';
import { EMPTY_RULE_SET } from './enrollment-rules.js';
import type { EnrollmentRuleSet } from './enrollment-rules.js';
import { loadReferencePolicies } from './reference-policy.js';
import type { AttestationTrust } from './registrar.js';
import { LevelRuntimeStore } from './runtime-store.level.js';
import { AttestationService, type AuditSink } from './service.js';
import { MeasuredBoot, measuredBootLimits } from './measured-boot/measured-boot.js';

export interface AttestationSettings {
  /** PEM bundle of trusted TPM-manufacturer CA certificates (EK certificate chains). */
  readonly ekCaBundlePem: string;
  /** Reference policy JSON files (see reference-policy.ts), validated at load. */
  readonly referencePolicyFiles: readonly string[];
  readonly sessionTtlSeconds?: number;
  readonly nonceTtlSeconds?: number;
  readonly maxNoncesPerRuntime?: number;
  /** Enrollment rules when no `trust` is given (tests); none: nothing is assigned. */
  readonly enrollmentRules?: EnrollmentRuleSet;
  /** How long an enrollment may wait for activation (default 900 s). */
  readonly pendingEnrollmentTtlSeconds?: number;
  /**
   * Operator-managed trust (src/attestation/registrar.ts): when given, the EK CA bundle and
   * the reference policies are read from it on every request (replaced and disabled at
   * run time, persisted), and the two settings above are not used.
   */
  readonly trust?: AttestationTrust;
  /** Size limits of event logs and IMA lists (measured-boot/); defaults when absent. */
  readonly measuredBoot?: { readonly eventLogMaxBytes: number; readonly imaLogMaxBytes: number };
}

export interface AttestationWiring {
  readonly db: Database;
  readonly audit: AuditSink;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
}

export async function createAttestation(
  config: AttestationSettings,
  deps: AttestationWiring,
): Promise<AttestationService> {
  const trust = config.trust;
  const fixed =
    trust === undefined
      ? {
          trustedEkCas: parseCaBundle(config.ekCaBundlePem),
          referencePolicies: await loadReferencePolicies(config.referencePolicyFiles),
        }
      : undefined;
  if (fixed !== undefined && fixed.trustedEkCas.length === 0)
    throw new ConfigError('attestation.ekCaBundle', 'no certificate in the EK CA bundle');
  return new AttestationService(
    {
      // The service reads these on each request: getters over the trust see its swaps.
      get trustedEkCas() {
        return trust?.trustedEkCas ?? fixed?.trustedEkCas ?? [];
      },
      get referencePolicies() {
        return trust?.referencePolicies ?? fixed?.referencePolicies ?? [];
      },
      get enrollmentRules() {
        return trust?.enrollmentRules ?? config.enrollmentRules ?? EMPTY_RULE_SET;
      },
      ...(config.pendingEnrollmentTtlSeconds === undefined
        ? {}
        : { pendingEnrollmentTtlMs: config.pendingEnrollmentTtlSeconds * 1000 }),
      ...(config.sessionTtlSeconds === undefined
        ? {}
        : { sessionTtlMs: config.sessionTtlSeconds * 1000 }),
      ...(config.nonceTtlSeconds === undefined
        ? {}
        : { nonceTtlMs: config.nonceTtlSeconds * 1000 }),
      ...(config.maxNoncesPerRuntime === undefined
        ? {}
        : { maxNoncesPerRuntime: config.maxNoncesPerRuntime }),
    },
    {
      store: new LevelRuntimeStore(deps.db),
      audit: deps.audit,
      measuredBoot: new MeasuredBoot(measuredBootLimits(config.measuredBoot)),
      ...(deps.now === undefined ? {} : { now: deps.now }),
    },
  );
}

export { AttestationService, parseSessionKey } from './service.js';
export type {
  AttestationConfig,
  AttestationDeps,
  AttestationResponse,
  AttestedSession,
  AuditSink,
  EcSessionJwk,
  EnrollRequest,
  EnrollResponse,
  RuntimeActor,
  RuntimeFilter,
  RuntimePage,
  RuntimeView,
  QuoteProof,
  VerifiedQuote,
} from './service.js';
export { qualifyingData, jcs, type QuoteRequest } from './verify-quote.js';
export {
  Base64,
  PcrValues,
  QuoteEvidence,
  QuoteEvidenceSchema,
  type QuoteEvidenceBody,
} from './quote-evidence.js';
export { ATTESTATION_CODES } from './errors.js';
export { MemoryRuntimeStore, createFakeRuntimeStore } from './runtime-store.memory.js';
export { parseCaBundle } from './ek-certificate.js';
export {
  AttestationTrust,
  bundleSha256,
  type EkCaView,
  type EnrollmentRulesView,
  type ReferencePolicyView,
  type TrustActor,
  type TrustWithdrawal,
} from './registrar.js';
export {
  loadEnrollmentRules,
  parseEnrollmentRules,
  type EnrollmentRuleSet,
} from './enrollment-rules.js';
export {
  parseReferencePolicy,
  loadReferencePolicies,
  type ReferencePolicy,
} from './reference-policy.js';
