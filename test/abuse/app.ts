/**
 * The app the abuse tests attack (bench/abuse.ts attacks the real appliance): createServer (its error
 * handler, validators, timeouts and logger) with every operator-plane plugin in the order
 * buildApp should register them, the real approval, health and runtime routes
 * (PROTOCOL.md §1, §2). Behind the runtime routes stands a service that parses a request as
 * the attestation service does (quote, signature, session key, measured-boot logs) and then
 * answers an untrusted verdict for any runtime id, instead of verifying against a runtime
 * record, a TPM and an HSM.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { UnknownRuntimeError } from '../../src/attestation/errors.js';
import { parseSessionKey } from '../../src/attestation/index.js';
import { MeasuredBoot } from '../../src/attestation/measured-boot/measured-boot.js';
import { parseQuoteRequest } from '../../src/attestation/verify-quote.js';
import { createServer, type App } from '../../src/http/app.js';
import { operatorAuth } from '../../src/http/plugins/auth.js';
import { metricsRoutes } from '../../src/http/plugins/metrics.js';
import { openApi } from '../../src/http/plugins/openapi.js';
import { rateLimit, RateLimiter, type RateLimits } from '../../src/http/plugins/rate-limit.js';
import { approvalRoutes } from '../../src/http/routes/approvals.js';
import { healthRoutes } from '../../src/http/routes/health.js';
import { runtimesRoutes, type RuntimesRoutesService } from '../../src/http/routes/runtimes.js';
import { MemoryApprovalStore } from '../../src/operators/approval-store.memory.js';
import { Approvals } from '../../src/operators/approvals.js';
import { createFakeOperatorTokens } from '../../src/operators/token-store.memory.js';
import type { OperatorTokens } from '../../src/operators/tokens.js';
import { bucketLimits } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { createMetrics, type GrantorMetrics } from '../../src/shared/metrics.js';

/** Parses as AttestationService.attest does, then answers untrusted; nothing else exists. */
function standInAttestation(): RuntimesRoutesService {
  const measuredBoot = new MeasuredBoot();
  const unknown = () => Promise.reject(new UnknownRuntimeError());
  return {
    attestationBodyLimit: measuredBoot.bodyLimit,
    enroll: unknown,
    activate: unknown,
    listRuntimes: () => Promise.resolve({ runtimes: [], nextCursor: null }),
    assignLabels: unknown,
    release: unknown,
    getRuntime: unknown,
    approve: unknown,
    revoke: unknown,
    challenge: () =>
      Promise.resolve({
        nonce: randomBytes(32).toString('base64'),
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      }),
    // A throw while parsing becomes the rejection the route answers, as in the real service.
    attest: (_runtimeId, body) =>
      Promise.resolve().then(() => {
        const { attest } = parseQuoteRequest(body);
        parseSessionKey(body.sessionKey);
        measuredBoot.parse(body);
        return {
          attestationId: 'at_abuse',
          verdict: 'untrusted' as const,
          reasons: ['no runtime record (abuse test)'],
          validUntil: null,
          pcrDigestHex: '',
          resetCount: attest.clockInfo.resetCount,
          restartCount: attest.clockInfo.restartCount,
        };
      }),
  };
}

export interface AbuseApp {
  readonly app: App;
  readonly tokens: OperatorTokens;
  readonly metrics: GrantorMetrics;
  readonly limiter: RateLimiter;
  /** Every log line the app wrote. */
  readonly logLines: string[];
}

/**
 * Over the defaults (src/shared/config.ts): one runtime's challenges refill too slowly to
 * matter within a test run, so counts do not depend on its speed.
 */
export const ABUSE_LIMITS: RateLimits = {
  challenges: bucketLimits([5000, 5000], [5, 0.001]),
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

  await app.register(runtimesRoutes, { attestation: standInAttestation() });

  await app.ready();
  return { app, tokens, metrics, limiter, logLines };
}
