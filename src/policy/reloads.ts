/**
 * The engine as the appliance runs it: every reload after the first set is logged, counted
 * and audited, whoever asked. An operator asks through `reload(by)` (the entry is written
 * before it resolves, and a failed append fails it); the file watch is recorded as
 * `by:watch` and a failed append is only logged. The engine calls onReload inside the
 * reload it runs, and the reload's promise chain carries its caller's AsyncLocalStorage
 * context, so an operator's reload is told apart from a watched one without a shared flag
 * to race on.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { factHex, factId, factText, fitReason, type AuditService } from '../audit/index.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import type { DomainLogger } from '../shared/log.js';
import type { GrantorMetrics } from '../shared/metrics.js';
import type { PolicyEngine } from './engine.js';
import { PolicySetInvalidError } from './errors.js';
import type { PolicySetInfo } from './types.js';

export interface PolicyReloadDeps {
  readonly audit: Pick<AuditService, 'append'>;
  readonly metrics: Pick<GrantorMetrics, 'policyReloads'>;
  readonly logger?: DomainLogger | undefined;
}

/** The hooks to give the engine, and the operator's reload over it. */
export interface PolicyReloads {
  readonly onReload: (info: PolicySetInfo) => void;
  readonly onReloadError: (error: PolicySetInvalidError) => void;
  /**
   * An operator's reload (`by`: the operator id), audited like a watched one
   * (`policy.reloaded` / `policy.reload_refused`); resolves once its entry is written.
   */
  readonly reload: (engine: PolicyEngine, by: string) => Promise<PolicySetInfo>;
}

interface Asked {
  readonly by: string;
  audited?: Promise<unknown>;
}

export function policyReloads(deps: PolicyReloadDeps): PolicyReloads {
  const { audit, metrics, logger } = deps;
  const reloader = new AsyncLocalStorage<Asked>();
  let active: PolicySetInfo | undefined;

  const refused = (error: PolicySetInvalidError, by: string): Promise<unknown> => {
    metrics.policyReloads.inc({
      outcome: 'refused',
      trigger: by === 'watch' ? 'watch' : 'operator',
    });
    logger?.error(
      { event: 'policy_reload_refused', code: error.code, by, active: active?.hash },
      `policy set refused, the previous one stays active: ${error.message}`,
    );
    return audit.append({
      type: 'policy.reload_refused',
      subject: active?.hash ?? 'none',
      decision: error.code,
      reasons: [`by:${by}`, error.message.length === 0 ? 'refused' : fitReason(error.message)],
      digest: jcsSha256Hex({ error: error.code, message: error.message, by }),
      facts: {
        policyHash: factHex(active?.hash),
        version: active?.version ?? null,
        by: factText(by),
        code: factId(error.code),
      },
    });
  };

  return {
    onReload: (info) => {
      active = info;
      if (info.version === 1) return; // the set loaded at start, not a reload
      const asked = reloader.getStore();
      const by = asked?.by ?? 'watch';
      metrics.policyReloads.inc({
        outcome: 'applied',
        trigger: asked === undefined ? 'watch' : 'operator',
      });
      logger?.info(
        { event: 'policy_reloaded', hash: info.hash, version: info.version, by },
        'policy set activated',
      );
      const appended = audit.append({
        type: 'policy.reloaded',
        subject: info.hash,
        reasons: [`version:${info.version}`, `by:${by}`],
        digest: jcsSha256Hex(info),
        facts: {
          policyHash: factHex(info.hash),
          version: info.version,
          by: factText(by),
          code: null,
        },
      });
      // An operator's reload awaits its entry (and fails with it); a watched one logs.
      if (asked !== undefined) asked.audited = appended;
      appended.catch((e: unknown) => {
        logger?.error({ err: e, event: 'policy_reload_unaudited', by }, 'audit append failed');
      });
    },
    onReloadError: (error) => {
      refused(error, 'watch').catch((e: unknown) => {
        logger?.error({ err: e, event: 'policy_reload_unaudited' }, 'audit append failed');
      });
    },
    reload: async (engine, by) => {
      const asked: Asked = { by };
      let info: PolicySetInfo;
      try {
        info = await reloader.run(asked, () => engine.reload());
      } catch (e) {
        if (e instanceof PolicySetInvalidError) await refused(e, by);
        throw e;
      }
      await asked.audited;
      return info;
    },
  };
}
