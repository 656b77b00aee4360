/**
 * The gateway SDK: what a gateway imports to enforce grants before an action executes.
 *
 *   const verifier = createGrantVerifier({
 *     issuer: 'grantor-1', audience: 'gw_payments',
 *     keys: new JwksClient({ url: 'https://grantor.example/.well-known/jwks.json' }),
 *     redeemer: new RedemptionClient({ applianceUrl: 'https://grantor.example/', audience: 'gw_payments' }),
 *   });
 *   const grant = await verifier.verify(jws, {
 *     execution: { action: 'payments.transfer', resource: 'acct:1234', parameters: body },
 *     redeem: true,
 *   });
 *
 * Every refusal is a GrantorError with a stable `code` (see errors.ts).
 *
 * Rooms: verify-grant.ts (offline verification, guard clauses in a fixed order), batch.ts
 * (batch-signed grants, the format's one home), strict-json.ts and encoding.ts (what a JWS
 * carries, parsed strictly), digest.ts (`parametersDigest`), jwks.ts (the appliance's
 * keys, cached), redeem.ts (online redemption), pop.ts (proof of possession of `cnf.jkt`),
 * revocations.ts (the offline view: snapshot and feed), route-table.ts (which request is
 * which execution), enforce.ts (the one path every enforcement point takes), middleware.ts
 * (Fastify and node `http`), url.ts (https, or http to loopback), errors.ts. The claims'
 * type is src/shared/grant-claims.ts. `grantor-gateway` is src/gateway-proxy.
 */
export {
  createGrantVerifier,
  verifyGrant,
  type ExpectedExecution,
  type GrantClaims,
  type GrantVerifier,
  type GrantVerifierConfig,
  type VerifiedGrant,
  type VerifyGrantOptions,
  type VerifyGrantRequest,
} from './verify-grant.js';
export {
  JwksClient,
  maxAgeSeconds,
  staticKeySource,
  type JwksClientOptions,
  type KeySource,
  type VerificationKey,
} from './jwks.js';
export {
  RedemptionClient,
  type Redeemer,
  type RedemptionClientOptions,
  type RedemptionOutcome,
  type ExecutionOutcome,
} from './redeem.js';
export {
  PopChallenges,
  createPopChallenge,
  parsePopHeader,
  popSigningInput,
  verifyPop,
  type PopChallengeOptions,
  type PopInput,
  type PopProof,
  type PresentedPop,
} from './pop.js';
export {
  BATCH_ALG,
  batchHead,
  batchLeafHash,
  batchTree,
  decodeBatchProof,
  encodeBatchProof,
  type BatchProof,
} from './batch.js';
export {
  RevocationView,
  SNAPSHOT_TYP,
  verifyRevocationSnapshot,
  type RevocableClaims,
  type RevocationCheck,
  type RevocationViewOptions,
  type SnapshotClaims,
} from './revocations.js';
export { canonicalJson, parametersDigest } from './digest.js';
export { es256SignatureProblem, toLowS } from './encoding.js';
export { parseStrictJson, type JsonValue } from './strict-json.js';
export * from './errors.js';
export {
  RouteTable,
  MAX_ROUTES,
  type GatewayRoute,
  type ParameterPart,
  type RouteExecution,
  type RouteRequest,
} from './route-table.js';
export {
  Enforcer,
  outcomeOfStatus,
  refusalCode,
  refusalStatus,
  type Authorized,
  type EnforceRequest,
  type EnforcementRedeemer,
  type EnforcerConfig,
  type GrantPresentation,
} from './enforce.js';
export {
  grantEnforcement,
  nodeEnforcement,
  readBody,
  refusalBody,
  type EnforcedHandler,
  type MiddlewareOptions,
} from './middleware.js';
export {
  ConfigError,
  GrantorError,
  InternalError,
  UnavailableError,
  type ErrorCode,
} from '../shared/errors.js';
