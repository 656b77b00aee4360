/**
 * GET /metrics (Prometheus text, the app's own registry) and the HTTP latency histogram,
 * observed for every route registered after this plugin (global on purpose). The route
 * label is the route pattern (`/v1/runtimes/:runtimeId`), never the raw URL, so the
 * series count stays bounded; unmatched requests are labelled `unmatched`.
 */
import type { FastifyInstance } from 'fastify';
import type { GrantorMetrics } from '../../shared/metrics.js';
import type { Role } from '../../operators/roles.js';
import { namedGlobalPlugin } from './plugin.js';

export interface MetricsPluginOptions {
  readonly metrics: GrantorMetrics;
  /** Protect /metrics with an operator role; default: public (scraped from the host network). */
  readonly role?: Role | readonly Role[];
}

export const METRICS_PLUGIN = 'grantor-metrics';

async function metricsPlugin(app: FastifyInstance, opts: MetricsPluginOptions): Promise<void> {
  const { metrics } = opts;
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequestSeconds.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
    await Promise.resolve();
  });
  app.get(
    '/metrics',
    {
      ...(opts.role === undefined ? {} : { config: { role: opts.role } }),
      schema: {
        summary: 'Prometheus metrics (text exposition format)',
        produces: ['text/plain'],
        response: { 200: { type: 'string' } },
      },
    },
    async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    },
  );
  await Promise.resolve();
}

/** `await app.register(metricsPlugin, { metrics })`, before the route plugins. */
export const metricsRoutes = namedGlobalPlugin(METRICS_PLUGIN, metricsPlugin);
