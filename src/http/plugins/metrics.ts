/**
 * GET /metrics (Prometheus text, the app's own registry) and the HTTP latency histogram,
 * observed for every route registered after this plugin (global on purpose). The route
 * label is the route pattern (`/v1/runtimes/:runtimeId`), never the raw URL, so the
 * series count stays bounded; unmatched requests are labelled `unmatched`.
 */
import type { FastifyInstance } from 'fastify';
import {
  errorCode,
  labelValue,
  type GrantorMetrics,
  type MetricVocabulary,
} from '../../shared/metrics.js';
import type { Role } from '../../operators/roles.js';
import { DEFAULT_RATE_LIMIT_BUCKETS } from '../../shared/config.js';
import { isErrorCode } from '../../shared/error-codes.js';
import { ERROR_STATUS, statusForCode } from '../error-status.js';
import { namedGlobalPlugin } from './plugin.js';

export interface MetricsPluginOptions {
  readonly metrics: GrantorMetrics;
  /** Protect /metrics with an operator role; default: public (scraped from the host network). */
  readonly role?: Role | readonly Role[];
}

export const METRICS_PLUGIN = 'grantor-metrics';

const codesWith = (test: (status: number) => boolean) =>
  Object.entries(ERROR_STATUS)
    .filter(([, status]) => test(status))
    .map(([code]) => code);

/**
 * The label values the counters start at zero with: every refusal code (4xx) for grant
 * denials and rejected attestations, every 422 code for untrusted verdicts' reasons, and
 * every rate limit bucket.
 */
export const METRIC_VOCABULARY: MetricVocabulary = {
  refusalCodes: codesWith((s) => s >= 400 && s < 500),
  verdictReasons: codesWith((s) => s === 422),
  rateLimitBuckets: Object.keys(DEFAULT_RATE_LIMIT_BUCKETS),
};

async function metricsPlugin(app: FastifyInstance, opts: MetricsPluginOptions): Promise<void> {
  const { metrics } = opts;
  metrics.startAtZero(METRIC_VOCABULARY);
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
      config: opts.role === undefined ? { public: true } : { role: opts.role },
      schema: {
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

/**
 * The code of a refusal the caller caused (a 4xx code: policy_denied, nonce_reused, ...);
 * undefined for a failure of the appliance (5xx: a dependency down, a bug).
 */
function refusalCode(e: unknown): string | undefined {
  const code = errorCode(e);
  return isErrorCode(code) && statusForCode(code) < 500 ? code : undefined;
}

export type GrantDecisionMetrics = Pick<
  GrantorMetrics,
  'grantsIssued' | 'grantsDenied' | 'decisionSeconds'
>;

/**
 * Answer one grant request through `decide` and count it: issued (by proof mode), denied
 * (by the refusal's code) or error (the appliance failed: no decision was made), and the
 * time the decision took, by that outcome. The answer or the error is passed on unchanged.
 */
export async function meterGrantDecision<T>(
  metrics: GrantDecisionMetrics | undefined,
  mode: string,
  decide: () => Promise<T>,
): Promise<T> {
  if (metrics === undefined) return decide();
  const end = metrics.decisionSeconds.startTimer();
  try {
    const issued = await decide();
    metrics.grantsIssued.inc({ mode: labelValue(mode) });
    end({ outcome: 'issued' });
    return issued;
  } catch (e) {
    const reason = refusalCode(e);
    if (reason === undefined) {
      end({ outcome: 'error' });
    } else {
      metrics.grantsDenied.inc({ reason: labelValue(reason) });
      end({ outcome: 'denied' });
    }
    throw e;
  }
}

export type AttestationMetrics = Pick<GrantorMetrics, 'attestationVerdicts'>;

/**
 * Answer one attestation through `attest` and count its verdict: `trusted` or `untrusted`
 * with the first reason (`ok` without one), or `rejected` with the refusal's code. A
 * failure of the appliance (5xx) is no verdict and is not counted here.
 */
export async function meterAttestation<T extends { verdict: string; reasons: readonly string[] }>(
  metrics: AttestationMetrics | undefined,
  attest: () => Promise<T>,
): Promise<T> {
  if (metrics === undefined) return attest();
  try {
    const answer = await attest();
    metrics.attestationVerdicts.inc({
      verdict: labelValue(answer.verdict),
      reason: labelValue(answer.reasons[0] ?? 'ok'),
    });
    return answer;
  } catch (e) {
    const reason = refusalCode(e);
    if (reason !== undefined) {
      metrics.attestationVerdicts.inc({ verdict: 'rejected', reason: labelValue(reason) });
    }
    throw e;
  }
}
