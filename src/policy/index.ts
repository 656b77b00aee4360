/**
 * The policy domain: Cedar policy sets validated against a schema, content-hashed, reloaded
 * atomically, and decisions with reasons and obligations. See docs/policy.md.
 *
 * Rooms: types.ts (the request and decision model), engine.ts (load, validate, decide),
 * policy-set.ts (the files, their canonical text and its hash), reloads.ts (every reload after the first logged,
 * counted and audited, by an operator or the watch), workers.ts with policy.worker.ts
 * (decisions on worker threads), cedar.port.ts with cedar.wasm.ts (the Cedar build),
 * archive.ts with archive.port.ts, archive.level.ts and its fake archive.memory.ts (every
 * set that was ever active, by hash), probe.ts (readiness), errors.ts, config.ts
 * (GRANTOR_POLICY_*); testing/ (request builders for tests).
 */
import { cedarWasm } from './cedar.wasm.js';
import { PolicyEngine, type PolicyEngineOptions } from './engine.js';
import { policyReloads, type PolicyReloadDeps } from './reloads.js';
import type { PolicySetInfo } from './types.js';

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
  canonicalPolicySet,
  policySetHash,
  readPolicySource,
  type PolicyFile,
  type PolicySource,
} from './policy-set.js';
export { policyReadinessProbe } from './probe.js';
export type { PolicyReloadDeps } from './reloads.js';
export type { ArchivedPolicySet, PolicyArchive } from './archive.port.js';
export { LevelPolicyArchive } from './archive.level.js';
export { POLICY_HASH, parseArchivedPolicySet } from './archive.js';
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

export interface AuditedPolicyEngine {
  readonly engine: PolicyEngine;
  /**
   * An operator's reload (`by`: the operator id), audited like a watched one
   * (`policy.reloaded` / `policy.reload_refused`); resolves once its entry is written.
   */
  readonly reload: (by: string) => Promise<PolicySetInfo>;
}

/**
 * createPolicyEngine with every later reload logged, counted and audited (reloads.ts):
 * what the appliance runs.
 */
export async function createAuditedPolicyEngine(
  config: Omit<PolicyConfig, 'onReload' | 'onReloadError'>,
  deps: PolicyReloadDeps,
): Promise<AuditedPolicyEngine> {
  const reloads = policyReloads(deps);
  const engine = await createPolicyEngine({
    ...config,
    onReload: reloads.onReload,
    onReloadError: reloads.onReloadError,
  });
  return { engine, reload: (by) => reloads.reload(engine, by) };
}
