/**
 * The Fastify application: one error handler, one code->status table, route plugins per
 * domain. Routes call services (passed in here), never stores or adapters.
 */
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawServerDefault,
} from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import type { AttestationService, AttestationTrust } from '../attestation/index.js';
import type { AuditService } from '../audit/index.js';
import type { GrantService } from '../grants/index.js';
import type { KeyService } from '../keys/index.js';
import type { Operators } from '../operators/index.js';
import { BadRequestError, type GrantorError } from '../shared/errors.js';
import { holdsLoneSurrogate } from '../shared/jcs.js';
import type { ReadinessProbe } from '../shared/readiness.js';
import { errorBody, installErrorHandler } from './errors.js';
import { publicMessage, statusForCode } from './error-status.js';
import { UnauthenticatedError } from '../operators/errors.js';
import { createMetrics, type GrantorMetrics } from '../shared/metrics.js';
import { captureOnlyLogger } from '../shared/logger.js';
import { operatorAuth, type OperatorAct, type OperatorRefusal } from './plugins/auth.js';
import type { HttpsOptions } from './plugins/tls.js';
import {
  DEFAULT_CONNECTION_LIMITS,
  limitConnections,
  type ConnectionLimits,
} from './plugins/connections.js';
import { metricsRoutes } from './plugins/metrics.js';
import { openApi } from './plugins/openapi.js';
import { installRequestLog, requestIdGenerator } from './plugins/request-log.js';
import { rateLimit, type RateLimiter, type RateLimits } from './plugins/rate-limit.js';
import { approvalRoutes } from './routes/approvals.js';
import { attestationRoutes } from './routes/attestation.js';
import { auditRoutes } from './routes/audit.js';
import { auditExportRoutes } from './routes/audit-export.js';
import { auditTlogRoutes } from './routes/audit-tlog.js';
import { grantsRoutes } from './routes/grants.js';
import { gatewayRoutes } from './routes/gateways.js';
import { healthRoutes } from './routes/health.js';
import { keysRoutes } from './routes/keys.js';
import { operatorRoutes } from './routes/operators.js';
import { policyRoutes, type PolicyAdministration } from './routes/policy.js';
import { runtimesRoutes } from './routes/runtimes.js';
import { revocationRouteMetrics, revocationRoutes } from './routes/revocations.js';

/** The services the routes call; a missing one leaves its routes out (focused tests). */
export interface AppServices {
  readonly probes: readonly ReadinessProbe[];
  /** When set (e.g. audit_rollback_detected at start), every route but the health routes answers it. */
  readonly lockdown?: GrantorError;
  readonly operators?: Operators;
  readonly keys?: KeyService;
  readonly audit?: AuditService;
  readonly attestation?: AttestationService;
  /** EK CA bundle and reference policy administration (dual control, with operators). */
  readonly attestationTrust?: AttestationTrust;
  readonly grants?: GrantService;
  /** The active policy set and operator reloads (GET /v1/policy, POST /v1/policy/reload). */
  readonly policy?: PolicyAdministration;
  /** The app's metrics registry; a fresh one when absent. */
  readonly metrics?: GrantorMetrics;
  /** Records every operator act (who, what) before its handler runs; failing fails the act. */
  readonly onOperatorAct?: (act: OperatorAct) => Promise<void>;
  /** Records refused operator attempts (bounded: see src/operators/refusals.ts). */
  readonly onOperatorRefused?: (refusal: OperatorRefusal) => Promise<void>;
  /** Rate limits per bucket (default: DEFAULT_RATE_LIMITS). */
  readonly rateLimits?: RateLimits;
  /** Most entries per evidence bundle (GRANTOR_AUDIT_EXPORT_MAX_ENTRIES; default bundle.ts's). */
  readonly auditExportMaxEntries?: number;
  /** The buckets' bounded store (default: 10 000 keys). */
  readonly rateLimiter?: RateLimiter;
  /** A feed answer not taken by its gateway in this time drops it (default 10 000 ms). */
  readonly revocationFeedSendTimeoutMs?: number;
}

/**
 * Every route must declare who may call it (config.role, config.actor or config.public):
 * one that does not stops buildApp instead of being public by omission.
 */
export const REQUIRE_DECLARATION = /^\//;

/** Without an operator store every operator credential is refused (fail closed). */
const NO_OPERATORS = {
  authenticate: (): Promise<never> => Promise.reject(new UnauthenticatedError()),
};

export interface AppOptions {
  /** A pino logger (see src/shared/logger.ts); none: silent. */
  readonly logger?: FastifyBaseLogger;
  /** Default body limit; routes may set a smaller one. */
  readonly bodyLimit?: number;
  /** TLS on the listener (see tlsOptions in ./plugins/tls.ts); none: plain HTTP. */
  readonly https?: HttpsOptions;
  /**
   * How long a request may take to arrive, headers and body (default 10 s): a slow client
   * is answered 408 and its connection closed, at most a second past this.
   */
  readonly requestTimeoutMs?: number;
  /** A TLS handshake not finished in this time closes the connection (default 10 s). */
  readonly tlsHandshakeTimeoutMs?: number;
  /** Open connections at most, in all and per client address (IPv6: per /64). */
  readonly connections?: ConnectionLimits;
}

/**
 * Node checks the request and headers timeouts only every `connectionsCheckingInterval`
 * (30 s by default), so a body trickled one byte at a time would hold its connection up to
 * 40 s past a 10 s timeout. Checking every second keeps the timeout what it says.
 */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1_000;

export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsPlugin as unknown as (ajv: Ajv) => Ajv;

/**
 * Bodies are validated exactly (no type coercion, no silent removal of unknown members:
 * `additionalProperties: false` refuses them); params, query and headers arrive as strings
 * and are coerced to their declared types.
 */
function validators(): { body: Ajv; other: Ajv } {
  const common = {
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    strict: false,
  } as const;
  return {
    body: addFormats(new Ajv({ ...common, coerceTypes: false })),
    other: addFormats(new Ajv({ ...common, coerceTypes: 'array' })),
  };
}

/** A configured server with the error handler and validators, but no routes. */
export function createServer(options: AppOptions = {}): App {
  const requestTimeout = options.requestTimeoutMs ?? 10_000;
  const logger = options.logger ?? captureOnlyLogger();
  const common = {
    ...(logger === undefined ? { logger: false } : { loggerInstance: logger }),
    bodyLimit: options.bodyLimit ?? 64 * 1024,
    // Refuse prototype-poisoning payloads outright rather than silently stripping them.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    requestTimeout,
    connectionTimeout: 15_000,
    keepAliveTimeout: 5_000,
    return503OnClosing: true,
    // One line per request instead (./plugins/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIdGenerator(),
  } as const;
  // Given to http(s).createServer: the headers timeout may not exceed the request timeout.
  const listener = {
    connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
    headersTimeout: requestTimeout,
    requestTimeout,
  };
  // Fastify types an https instance over https.Server, a plain one over http.Server. Both
  // hand routes the same IncomingMessage/ServerResponse, and nothing here uses the raw
  // server beyond listen/close/address, which both have: the https instance is typed as
  // App at this one place rather than spreading the server type through every route.
  const app = (
    options.https === undefined
      ? Fastify({ ...common, http: listener })
      : (Fastify({
          ...common,
          // Node's default is 120 s: a bare TCP connection that never sends a ClientHello
          // would hold its slot that long.
          https: {
            ...options.https,
            ...listener,
            handshakeTimeout: options.tlsHandshakeTimeoutMs ?? 10_000,
          },
        }) as unknown as FastifyInstance)
  ).withTypeProvider<TypeBoxTypeProvider>();
  limitConnections(app.server, options.connections ?? DEFAULT_CONNECTION_LIMITS);
  const ajv = validators();
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? ajv.body : ajv.other).compile(schema),
  );
  installErrorHandler(app);
  installRequestLog(app);
  // A JSON string with half a surrogate pair is not text and has no canonical form
  // (RFC 8785 §3.2.2.2): refused before any route sees it, so every JCS over a body (the
  // request signatures, digests, quotes' qualifying data) is defined.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body !== undefined && holdsLoneSurrogate(request.body)) {
      done(
        new BadRequestError('the body holds a string that is not Unicode text (a lone surrogate)'),
      );
      return;
    }
    done();
  });
  return app;
}

export async function buildApp(services: AppServices, options: AppOptions = {}): Promise<App> {
  const app = createServer(options);
  const lockdown = services.lockdown;
  if (lockdown !== undefined) {
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/healthz' || request.url === '/readyz') return;
      // Scraped while degraded too: grantor_ready says which component is down.
      if (request.url === '/metrics') return;
      const status = statusForCode(lockdown.code);
      await reply
        .code(status)
        .send(errorBody(lockdown.code, publicMessage(lockdown.code, status, lockdown.message)));
    });
  }
  const metrics = services.metrics ?? createMetrics();
  // What start-up found: every component opened, but the one a lockdown names.
  metrics.setReadiness(
    Object.fromEntries(services.probes.map((p) => [p.name, p.code !== lockdown?.code])),
  );
  // Always registered, before every route: a route declaring config.role is never public
  // by omission, operator credentials never act as a runtime, and a route that declares
  // nothing at all stops the start (REQUIRE_DECLARATION).
  await app.register(operatorAuth, {
    tokens: services.operators?.tokens ?? NO_OPERATORS,
    requireDeclaration: REQUIRE_DECLARATION,
    ...(services.operators?.certificates === undefined
      ? {}
      : { certificates: services.operators.certificates }),
    ...(services.operators === undefined ? {} : { gateways: services.operators.gateways }),
    ...(services.onOperatorAct === undefined ? {} : { onOperatorAct: services.onOperatorAct }),
    ...(services.onOperatorRefused === undefined ? {} : { onRefused: services.onOperatorRefused }),
  });
  await app.register(rateLimit, {
    metrics,
    ...(services.rateLimits === undefined ? {} : { limits: services.rateLimits }),
    ...(services.rateLimiter === undefined ? {} : { limiter: services.rateLimiter }),
  });
  // openApi before the route plugins: it documents the routes registered after it.
  await app.register(openApi, { title: 'grantor', version: '1' });
  await app.register(metricsRoutes, { metrics });
  await app.register(healthRoutes, {
    probes: services.probes,
    onReport: (checks) => {
      metrics.setReadiness(Object.fromEntries(Object.entries(checks).map(([n, r]) => [n, r.ok])));
    },
  });
  if (services.operators !== undefined) {
    await app.register(approvalRoutes, { approvals: services.operators.approvals });
    await app.register(operatorRoutes, {
      operators: services.operators,
      approvals: services.operators.approvals,
    });
    await app.register(gatewayRoutes, { gateways: services.operators.gateways });
  }
  if (services.keys !== undefined) {
    await app.register(keysRoutes, {
      keys: services.keys,
      ...(services.operators === undefined ? {} : { approvals: services.operators.approvals }),
    });
  }
  if (services.audit !== undefined) {
    await app.register(auditRoutes, { audit: services.audit });
    await app.register(auditTlogRoutes, { audit: services.audit });
  }
  if (services.audit !== undefined) {
    // The live evidence bundle; policy sets from the archive (GET /v1/policy/{hash}).
    const archived = services.policy?.archived?.bind(services.policy);
    await app.register(auditExportRoutes, {
      audit: services.audit,
      policySet: (hash) => archived?.(hash) ?? Promise.resolve(undefined),
      ...(services.auditExportMaxEntries === undefined
        ? {}
        : { maxEntries: services.auditExportMaxEntries }),
    });
  }
  if (services.attestation !== undefined) {
    const grants = services.grants;
    await app.register(runtimesRoutes, {
      attestation: services.attestation,
      metrics,
      // Revoking a runtime revokes its live grants and their descendants (issue 18).
      ...(grants === undefined
        ? {}
        : {
            revokeGrants: (id: string, actor: string) =>
              grants.revokeRuntime(id, actor, new Date()),
          }),
    });
  }
  if (services.attestationTrust !== undefined && services.operators !== undefined) {
    await app.register(attestationRoutes, {
      trust: services.attestationTrust,
      approvals: services.operators.approvals,
    });
  }
  if (services.policy !== undefined) {
    await app.register(policyRoutes, { policy: services.policy });
  }
  if (services.grants !== undefined) {
    await app.register(grantsRoutes, {
      grants: services.grants,
      metrics,
      // Quote mode may carry the event log and IMA list (measured boot): the same limit.
      ...(services.attestation === undefined
        ? {}
        : { quoteBodyLimit: services.attestation.attestationBodyLimit }),
    });
    // The revocation feed and snapshot for gateways (docs/protocol.md §3.1).
    await app.register(revocationRoutes, {
      feed: services.grants.revocations,
      snapshots: services.grants.snapshots,
      metrics: revocationRouteMetrics(metrics),
      ...(services.revocationFeedSendTimeoutMs === undefined
        ? {}
        : { sendTimeoutMs: services.revocationFeedSendTimeoutMs }),
    });
  }
  await app.ready();
  return app;
}
