import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { runProbes, type ReadinessProbe, type ReadinessReport } from '../../shared/readiness.js';
import { errorResponses } from '../schemas.js';

const ProbeResultSchema = Type.Union([
  Type.Object({ ok: Type.Literal(true) }),
  Type.Object({ ok: Type.Literal(false), reason: Type.String() }),
]);

/** GET /healthz (the process is alive) and GET /readyz (every dependency usable). */
export const healthRoutes: FastifyPluginAsyncTypebox<{
  probes: readonly ReadinessProbe[];
  /** Told every /readyz result (grantor_ready). */
  onReport?: (checks: ReadinessReport['checks']) => void;
}> = (app, opts) => {
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: {
        response: {
          200: Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false }),
        },
      },
    },
    () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        response: {
          200: Type.Object(
            {
              status: Type.Literal('ready'),
              checks: Type.Record(Type.String(), ProbeResultSchema),
            },
            { additionalProperties: false },
          ),
          ...errorResponses(503),
        },
      },
    },
    async (_request, reply) => {
      const report = await runProbes(opts.probes);
      opts.onReport?.(report.checks);
      if (report.firstFailure === undefined)
        return { status: 'ready' as const, checks: report.checks };
      const down = Object.entries(report.checks)
        .filter(([, r]) => !r.ok)
        .map(([name]) => name);
      // The reasons are operator-facing component states, not internals of a request.
      return reply.code(503).send({
        error: {
          code: report.firstFailure.code,
          message: `not ready: ${down.join(', ')} unavailable`,
          details: { down, checks: report.checks },
        },
      });
    },
  );
  return Promise.resolve();
};
