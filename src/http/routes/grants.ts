/**
 * PROTOCOL.md §3: grant requests, redemption, lineage and revocation. Every param, body
 * and response is a schema with `additionalProperties: false`; the response schemas filter
 * what leaves the process. Runtime routes refuse operator credentials (`actor: 'runtime'`);
 * revocation needs an operator. Runtime routes declare their rate-limit bucket and a body
 * limit sized to their schema. The grant request's schema is the domain's
 * (src/grants/request.schema.ts, the only copy of its limits), which the service checks
 * again with its semantic checks (ttl range, one proof), so a direct caller gets them too.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static, type TSchema } from 'typebox';
import {
  GrantRequestSchema,
  Id,
  type GrantService,
  type GrantView as GrantViewShape,
} from '../../grants/index.js';
import { meterGrantDecision, type GrantDecisionMetrics } from '../plugins/metrics.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { requireActor } from '../plugins/auth.js';
import { requireGateway } from '../plugins/gateway-auth.js';
import { errorResponses } from '../schemas.js';

const closed = { additionalProperties: false } as const;
const Time = Type.String({ format: 'date-time' });

const IssuedReply = Type.Object(
  { grantId: Type.String(), grant: Type.String(), expiresAt: Time, auditSeq: Type.Integer() },
  closed,
);

const GrantParams = Type.Object({ grantId: Id('gr') }, closed);

const RedeemBody = Type.Object(
  {
    audience: Type.String({ minLength: 1, maxLength: 128 }),
    outcome: Type.Optional(
      Type.Union([Type.Literal('started'), Type.Literal('succeeded'), Type.Literal('failed')]),
    ),
  },
  closed,
);

const RedeemReply = Type.Object(
  { grantId: Type.String(), redeemedAt: Time, auditSeq: Type.Integer() },
  closed,
);

const ExecutionOutcome = Type.Union([
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('aborted'),
]);
const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });

const OutcomeBody = Type.Object(
  { outcome: ExecutionOutcome, resultDigest: Type.Optional(Sha256Hex) },
  closed,
);

const OutcomeReply = Type.Object(
  {
    grantId: Type.String(),
    outcome: ExecutionOutcome,
    recordedAt: Time,
    /** The `grant.outcome` entry; null while it is owed (auditPending). */
    auditSeq: Type.Union([Type.Integer(), Type.Null()]),
    auditPending: Type.Boolean(),
  },
  closed,
);

const Execution = Type.Object(
  {
    at: Time,
    gateway: Type.String(),
    outcome: ExecutionOutcome,
    resultDigest: Type.Optional(Sha256Hex),
  },
  closed,
);

const GrantView = Type.Object(
  {
    grantId: Type.String(),
    runtimeId: Type.String(),
    action: Type.String(),
    resource: Type.String(),
    audience: Type.String(),
    parent: Type.Union([Type.String(), Type.Null()]),
    root: Type.String(),
    depth: Type.Integer(),
    issuedAt: Time,
    expiresAt: Time,
    state: Type.Union([
      Type.Literal('live'),
      Type.Literal('expired'),
      Type.Literal('revoked'),
      Type.Literal('redeemed'),
    ]),
    redeemedBy: Type.Optional(Type.String()),
    execution: Type.Optional(Execution),
  },
  closed,
);

/** The schema and the domain's GrantView are one shape: a drift of either fails to compile. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Holds<T extends true> = T;
export type GrantViewSchemaIsGrantView = Holds<Same<Static<typeof GrantView>, GrantViewShape>>;

const LineageReply = Type.Object(
  { grant: GrantView, ancestors: Type.Array(GrantView), descendants: Type.Array(GrantView) },
  closed,
);

const RevokeReply = Type.Object(
  {
    grantId: Type.String(),
    revoked: Type.Array(Type.String()),
    /** The `grant.revoke` entry; null while it is owed (auditPending). */
    auditSeq: Type.Union([Type.Integer(), Type.Null()]),
    /** The revocation is in force; its entry is not in the log yet and is retried. */
    auditPending: Type.Boolean(),
  },
  closed,
);

const errorStatuses = [400, 401, 403, 404, 409, 410, 422, 429, 500, 503] as const;

export const grantsRoutes: FastifyPluginAsyncTypebox<{
  grants: GrantService;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  now?: () => number;
  /** Counts each decision (issued by mode, denied by code) and its latency. */
  metrics?: GrantDecisionMetrics;
  /** Body limit for quote mode with measured-boot logs (the attestation route's). */
  quoteBodyLimit?: number;
}> = (app, opts) => {
  const svc = opts.grants;
  const clock = opts.now ?? Date.now;
  const now = (): Date => new Date(clock());

  app.post(
    '/v1/grants',
    {
      // Quote mode carries a quote and its PCR values: under 20 KiB; session mode ~1 KiB;
      // with measured boot also the event log and IMA entries (the attestation route's limit).
      bodyLimit: Math.max(opts.quoteBodyLimit ?? 0, bodyLimit('medium').bodyLimit),
      config: { actor: 'runtime', rateLimit: { bucket: 'grants' } },
      schema: {
        body: GrantRequestSchema,
        response: { 201: IssuedReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) => {
      const mode = request.body.quote === undefined ? 'session' : 'quote';
      const issued = await meterGrantDecision(opts.metrics, mode, () =>
        svc.request(request.body, now()),
      );
      return reply.code(201).send(issued);
    },
  );

  // Enrolled gateways redeem, for their own audiences, and report what they executed (once,
  // by the redeeming gateway only); operators are refused (403). The gateway token is checked
  // by the auth plugin from `actor: 'gateway'` (plugins/auth.ts).
  const gatewayCall = <B extends TSchema, R extends TSchema>(body: B, reply: R) => ({
    ...bodyLimit('tiny'),
    config: {
      actor: 'gateway' as const,
      rateLimit: { bucket: 'redeem' as const, perRuntime: false },
    },
    schema: {
      params: GrantParams,
      body,
      response: { 200: reply, ...errorResponses(...errorStatuses) },
    },
  });

  app.post('/v1/grants/:grantId/redeem', gatewayCall(RedeemBody, RedeemReply), (request) =>
    svc.redeem(request.params.grantId, request.body, now(), requireGateway(request)),
  );

  app.post('/v1/grants/:grantId/outcome', gatewayCall(OutcomeBody, OutcomeReply), (request) =>
    svc.outcome(request.params.grantId, request.body, now(), requireGateway(request)),
  );

  app.get(
    '/v1/grants/:grantId/lineage',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        params: GrantParams,
        response: { 200: LineageReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) =>
      reply.code(200).send(await svc.lineage(request.params.grantId, now())),
  );

  app.post(
    '/v1/grants/:grantId/revoke',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator' },
      schema: {
        params: GrantParams,
        response: { 200: RevokeReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) => {
      // The authenticated operator, never a default name: a revoke nobody can be named for
      // is not performed.
      const actor = requireActor(request).id;
      return reply.code(200).send(await svc.revoke(request.params.grantId, actor, now()));
    },
  );

  return Promise.resolve();
};
