/** Readiness of the policy engine for /readyz: a set is active and the engine answers. */
import type { ReadinessProbe } from '../shared/readiness.js';
import { canaryRequest, type PolicyEngine } from './engine.js';

export function policyReadinessProbe(engine: PolicyEngine): ReadinessProbe {
  return {
    name: 'policy',
    code: 'policy_unavailable',
    check: () => {
      const info = engine.info();
      const action = info?.actions[0];
      if (info === undefined || action === undefined) {
        return Promise.resolve({ ok: false, reason: 'no policy set is loaded' });
      }
      try {
        // A canary decision through the wasm fast path (its outcome does not matter).
        engine.decide(canaryRequest(action));
      } catch (err) {
        return Promise.resolve({
          ok: false,
          reason: err instanceof Error ? err.message : 'policy engine failed',
        });
      }
      return Promise.resolve({ ok: true });
    },
  };
}
