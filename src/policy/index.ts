/**
 * The policy domain: Cedar policy sets validated against a schema, content-hashed, reloaded
 * atomically, and decisions with reasons and obligations. See docs/policy.md.
 */
import { cedarWasm } from './cedar.wasm.js';
import { PolicyEngine, type PolicyEngineOptions } from './engine.js';

export {
  PolicyEngine,
  grantTtlSeconds,
  type PolicyEngineOptions,
  type PolicySlot,
} from './engine.js';
export { PolicyWorkers, type PolicyWorkersOptions } from './workers.js';
export {
  PolicyRequestInvalidError,
  PolicySetInvalidError,
  PolicySetNotFoundError,
  PolicyUnavailableError,
} from './errors.js';
export {
  policySetHash,
  readPolicySource,
  type PolicyFile,
  type PolicySource,
} from './policy-set.js';
export { policyReadinessProbe } from './probe.js';
export type { ArchivedPolicySet, PolicyArchive } from './archive.port.js';
export { LevelPolicyArchive } from './archive.level.js';
export { POLICY_HASH, canonicalPolicySet, parseArchivedPolicySet } from './archive.js';
export type * from './types.js';
export type { CedarPort } from './cedar.port.js';
/** The real engine; wrap it to inject failures in fault tests (see engine.test.ts). */
export { cedarWasm } from './cedar.wasm.js';

export interface PolicyConfig extends Omit<PolicyEngineOptions, 'cedar'> {
  /** Reload on file changes. Default false. */
  readonly watch?: boolean;
}

/**
 * The engine with the real Cedar build, its first set loaded (throws PolicySetInvalidError
 * if that set is refused: the appliance does not start without a policy) and, if asked,
 * watching for changes.
 */
export async function createPolicyEngine(config: PolicyConfig): Promise<PolicyEngine> {
  const engine = new PolicyEngine({ ...config, cedar: cedarWasm });
  await engine.reload();
  if (config.watch === true) engine.watch();
  return engine;
}
