/**
 * The app the abuse tests attack (bench/abuse.ts attacks the real appliance): createServer (its error
 * handler, validators, timeouts and logger) with every operator-plane plugin in the order
 * buildApp should register them, the real approval and health routes, and two routes in
 * the shape of the runtime protocol (PROTOCOL.md §2, §3) standing in for routes that need
 * a TPM and an HSM behind them.
 */
import { Writable } from 'node:stream';
import { Type } from 'typebox';
import type { FastifyBaseLogger } from 'fastify';
import { createServer, type App } from '../../src/http/app.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { bodyLimit } from '../../src/http/plugins/body-limit.js';
import { metricsRoutes } from '../../src/http/plugins/metrics.js';
import { openApi } from '../../src/http/plugins/openapi.js';
import { rateLimit, RateLimiter, type RateLimits } from '../../src/http/plugins/rate-limit.js';
import { approvalRoutes } from '../../src/http/routes/approvals.js';
import { healthRoutes } from '../../src/http/routes/health.js';
import { Base64, ErrorSchema, RuntimeParams } from '../../src/http/schemas.js';
import { MemoryApprovalStore } from '../../src/operators/approval-store.memory.js';
import { Approvals } from '../../src/operators/approvals.js';
import { createFakeOperatorTokens } from '../../src/operators/token-store.memory.js';
import type { OperatorTokens } from '../../src/operators/tokens.js';
import { bucketLimits } from '../../src/shared/config.js';
import { BadRequestError } from '../../src/shared/errors.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics, type GrantorMetrics } from '../../src/shared/metrics.js';

function decodeStrict(name: string, text: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  // Non-zero padding bits decode to the same bytes: refuse them rather than accept twins.
  if (bytes.toString('base64') !== text)
    throw new BadRequestError(`${name} is not canonical base64`);
  return bytes;
}

export interface AbuseApp {
  readonly app: App;
  readonly tokens: OperatorTokens;
  readonly metrics: GrantorMetrics;
  readonly limiter: RateLimiter;
  /** Every log line the app wrote. */
  readonly logLines: string[];
}

export const ABUSE_LIMITS: RateLimits = {
  // A refill too slow to matter within a test run, so counts do not depend on its speed.
  challenges: bucketLimits([5000, 5000], [5, 0.001]),
  enroll: bucketLimits([10, 1], [5, 1]),
  grants: bucketLimits([100_000, 100_000], [50, 20]),
};

export async function buildAbuseApp(
  options: {
    limits?: RateLimits;
    maxEntries?: number;
    logLevel?: string;
    logger?: FastifyBaseLogger;
    requestTimeoutMs?: number;
  } = {},
): Promise<AbuseApp> {
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  });
  const metrics = createMetrics({ defaultMetrics: false });
  const tokens = createFakeOperatorTokens();
  const approvals = new Approvals({ store: new MemoryApprovalStore() });
  const limiter = new RateLimiter(options.maxEntries ?? 1000);
  const app = createServer({
    logger: options.logger ?? createLogger(options.logLevel ?? 'debug', sink),
    // Short, so the slow-body test sees the cut within a test's time.
    requestTimeoutMs: options.requestTimeoutMs ?? 2_000,
  });
  await app.register(openApi, { title: 'grantor (abuse test)' });
  await app.register(metricsRoutes, { metrics });
  await app.register(operatorAuth, { tokens });
  await app.register(rateLimit, { limits: options.limits ?? ABUSE_LIMITS, limiter, metrics });
  await app.register(healthRoutes, {
    probes: [{ name: 'tpm', code: 'tpm_unavailable', check: () => Promise.resolve({ ok: true }) }],
  });
  await app.register(approvalRoutes, { approvals });

  app.post(
    '/v1/runtimes/:runtimeId/challenges',
    {
      ...bodyLimit('tiny'),
      config: { actor: 'runtime', rateLimit: { bucket: 'challenges' } },
      schema: {
        params: RuntimeParams,
        response: {
          201: Type.Object(
            { nonce: Type.String(), expiresAt: Type.String() },
            { additionalProperties: false },
          ),
          400: ErrorSchema,
          403: ErrorSchema,
          429: ErrorSchema,
        },
      },
    },
    async (_request, reply) => {
      await reply.code(201).send({ nonce: 'A'.repeat(44), expiresAt: new Date().toISOString() });
    },
  );

  app.post(
    '/v1/runtimes/:runtimeId/attestations',
    {
      ...bodyLimit('medium'),
      config: { actor: 'runtime', rateLimit: { bucket: 'grants' } },
      schema: {
        params: RuntimeParams,
        body: Type.Object(
          {
            nonce: Base64(64),
            quote: Base64(4096),
            signature: Base64(1024),
            pcrs: Type.Record(
              Type.String({ pattern: '^(sha1|sha256|sha384)$' }),
              Type.Record(
                Type.String({ pattern: '^([0-9]|1[0-9]|2[0-3])$' }),
                Type.String({ pattern: '^[0-9a-f]{40,96}$' }),
                { additionalProperties: false },
              ),
              // A Record with a key pattern does not refuse other keys by itself.
              { additionalProperties: false },
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object(
            { verdict: Type.String(), bytes: Type.Integer() },
            { additionalProperties: false },
          ),
          400: ErrorSchema,
          403: ErrorSchema,
          413: ErrorSchema,
          429: ErrorSchema,
        },
      },
    },
    async (request, reply) => {
      const quote = decodeStrict('quote', request.body.quote);
      const signature = decodeStrict('signature', request.body.signature);
      decodeStrict('nonce', request.body.nonce);
      await reply.code(201).send({ verdict: 'untrusted', bytes: quote.length + signature.length });
    },
  );

  await app.ready();
  return { app, tokens, metrics, limiter, logLines };
}
