/** The real Cedar engine: @cedar-policy/cedar-wasm (Node build, loaded synchronously). */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarPort } from './cedar.port.js';

export const cedarWasm: CedarPort = {
  policySetTextToParts: (text) => cedar.policySetTextToParts(text),
  policyToJson: (policy) => cedar.policyToJson(policy),
  schemaToJsonWithResolvedTypes: (schema) => cedar.schemaToJsonWithResolvedTypes(schema),
  validate: (call) => cedar.validate(call),
  preparsePolicySet: (id, policies) => cedar.preparsePolicySet(id, policies),
  preparseSchema: (name, schema) => cedar.preparseSchema(name, schema),
  statefulIsAuthorized: (call) => cedar.statefulIsAuthorized(call),
};
