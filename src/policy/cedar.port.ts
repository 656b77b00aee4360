/**
 * The part of the Cedar engine the policy domain uses. The real adapter is the wasm build
 * (cedar.wasm.ts); tests may hand the engine a failing one to prove it fails closed.
 */
import type {
  AuthorizationAnswer,
  CheckParseAnswer,
  PolicySet,
  PolicySetTextToPartsAnswer,
  PolicyToJsonAnswer,
  Schema,
  SchemaToJsonWithResolvedTypesAnswer,
  StatefulAuthorizationCall,
  ValidationAnswer,
  ValidationCall,
} from '@cedar-policy/cedar-wasm/nodejs';

export type {
  AuthorizationAnswer,
  CedarValueJson,
  CheckParseAnswer,
  DetailedError,
  EntityJson,
  PolicyJson,
  PolicySet,
  SchemaJson,
  StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';

export interface CedarPort {
  policySetTextToParts(text: string): PolicySetTextToPartsAnswer;
  policyToJson(policy: string): PolicyToJsonAnswer;
  schemaToJsonWithResolvedTypes(schema: string): SchemaToJsonWithResolvedTypesAnswer;
  validate(call: ValidationCall): ValidationAnswer;
  /** Parses and caches a policy set under `id` in the wasm instance (replacing that id). */
  preparsePolicySet(id: string, policies: PolicySet): CheckParseAnswer;
  preparseSchema(name: string, schema: Schema): CheckParseAnswer;
  statefulIsAuthorized(call: StatefulAuthorizationCall): AuthorizationAnswer;
}
