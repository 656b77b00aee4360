/**
 * Wiring of the attestation domain: one `createAttestation(config, deps)`, plain arguments.
 * Export surface for the HTTP routes and for grants (sessionFor, verifyQuote).
 */
import type { Database } from '../shared/db.level.js';
import { ConfigError } from '../shared/errors.js';
import { parseCaBundle } from './ek-certificate.js';
import { loadReferencePolicies } from './reference-policy.js';
import { LevelRuntimeStore } from './runtime-store.level.js';
import { AttestationService, type AuditSink } from './service.js';

export interface AttestationSettings {
  /** PEM bundle of trusted TPM-manufacturer CA certificates (EK certificate chains). */
  readonly ekCaBundlePem: string;
  /** Reference policy JSON files (see reference-policy.ts), validated at load. */
  readonly referencePolicyFiles: readonly string[];
  readonly sessionTtlSeconds?: number;
  readonly nonceTtlSeconds?: number;
  readonly maxNoncesPerRuntime?: number;
}

export interface AttestationWiring {
  readonly db: Database;
  readonly audit: AuditSink;
  readonly now?: () => Date;
}

export async function createAttestation(
  config: AttestationSettings,
  deps: AttestationWiring,
): Promise<AttestationService> {
  const trustedEkCas = parseCaBundle(config.ekCaBundlePem);
  if (trustedEkCas.length === 0)
    throw new ConfigError('attestation.ekCaBundle', 'no certificate in the EK CA bundle');
  const referencePolicies = await loadReferencePolicies(config.referencePolicyFiles);
  return new AttestationService(
    {
      trustedEkCas,
      referencePolicies,
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
      ...(deps.now === undefined ? {} : { now: deps.now }),
    },
  );
}

export { AttestationService, AuditUnavailableError, parseSessionKey } from './service.js';
export type {
  AttestationConfig,
  AttestationDeps,
  AttestationResponse,
  AttestedSession,
  AuditSink,
  EcSessionJwk,
  EnrollRequest,
  EnrollResponse,
  RuntimeView,
  VerifiedQuote,
} from './service.js';
export { qualifyingData, jcs, type QuoteRequest } from './verify-quote.js';
export { ATTESTATION_CODES } from './errors.js';
export { MemoryRuntimeStore } from './runtime-store.port.js';
export { parseCaBundle } from './ek-certificate.js';
export {
  parseReferencePolicy,
  loadReferencePolicies,
  type ReferencePolicy,
} from './reference-policy.js';
