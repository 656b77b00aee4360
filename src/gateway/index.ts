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
