/**
 * Readiness of the policy engine for /readyz: a set is active and whatever decides the
 * grant requests (the engine, or its worker threads) answers a canary decision.
 */
import type { ReadinessProbe } from '../shared/readiness.js';
import { canaryRequest, type PolicyEngine } from './engine.js';
import type { PolicyDecider } from './types.js';

export function policyReadinessProbe(
  engine: PolicyEngine,
  decider: PolicyDecider = engine,
): ReadinessProbe {
  return {
    name: 'policy',
    code: 'policy_unavailable',
    check: async () => {
      const info = engine.info();
      const action = info?.actions[0];
      if (info === undefined || action === undefined) {
        return { ok: false, reason: 'no policy set is loaded' };
      }
      try {
        // A canary decision the way grant requests are decided (its outcome does not matter).
        await decider.decide(canaryRequest(action));
      } catch (err) {
        return { ok: false, reason: err instanceof Error ? err.message : 'policy engine failed' };
      }
      return { ok: true };
    },
  };
}
