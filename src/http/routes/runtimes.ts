/**
 * PROTOCOL.md §1 (enrollment, activation, operator reads and approvals) and §2 (challenges,
 * attestations). Every param, body and response is a schema; `additionalProperties: false`
 * refuses unknown members and the response schemas filter what leaves the process.
 * Each route declares who may call it for the operator auth hook (src/http/plugins/auth.ts):
 * `actor: 'runtime'` for the runtime protocol, operator roles for GET, approve and revoke.
 * Runtime routes also declare their rate-limit bucket (per client address, and per runtime
 * where the id is known) and a body limit sized to their schema.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AttestationService } from '../../attestation/index.js';
import { meterAttestation, type AttestationMetrics } from '../plugins/metrics.js';
import { requireActor } from '../plugins/auth.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { Base64, errorResponses, QuoteEvidence, RuntimeParams } from '../schemas.js';

const closed = { additionalProperties: false } as const;
const Hex = Type.String({ pattern: '^[0-9a-fA-F]*$', maxLength: 128 });
const Time = Type.String({ format: 'date-time' });
const State = Type.Union([
  Type.Literal('pending_activation'),
  Type.Literal('pending_approval'),
  Type.Literal('active'),
  Type.Literal('revoked'),
]);
const Labels = Type.Record(
  Type.String({ minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9._/-]+$' }),
  Type.String({ maxLength: 256 }),
  // A Record with a key pattern does not refuse other keys by itself.
  { maxProperties: 32, additionalProperties: false },
);

const EnrollBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' }),
    labels: Type.Optional(Labels),
    ekCertificate: Type.Optional(Base64(8192)),
    ekPublic: Type.Optional(Base64(1024)),
    akPublic: Base64(1024),
  },
  closed,
);

const EnrollReply = Type.Object(
  {
    runtimeId: Type.String(),
    state: Type.Literal('pending_activation'),
    credentialBlob: Type.String(),
    encryptedSecret: Type.String(),
  },
  closed,
);

const StateReply = Type.Object({ runtimeId: Type.String(), state: State }, closed);
/** A runtime revoke: `grantsRevoked` counts its live grants and descendants revoked with it. */
const RevokeReply = Type.Object(
  {
    runtimeId: Type.String(),
    state: State,
    grantsRevoked: Type.Optional(Type.Integer({ minimum: 0 })),
    /** The grants are revoked; their `grant.revoke` entry is owed to the log (retried). */
    grantsAuditPending: Type.Optional(Type.Boolean()),
  },
  closed,
);

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) =>
  Type.Union([t, Type.Null()]);

const RuntimeReply = Type.Object(
  {
    runtimeId: Type.String(),
    name: Type.String(),
    labels: Type.Record(Type.String(), Type.String()),
    requestedLabels: Type.Record(Type.String(), Type.String()),
    labelSource: Nullable(Type.String()),
    state: State,
    ekCertified: Type.Boolean(),
    ek: Type.Object(
      {
        publicKeySha256: Nullable(Type.String({ pattern: '^[0-9a-f]{64}$' })),
        certificate: Nullable(
          Type.Object({ issuer: Type.String(), serialNumber: Type.String() }, closed),
        ),
        tpm: Nullable(
          Type.Object(
            { manufacturer: Type.String(), model: Type.String(), version: Type.String() },
            closed,
          ),
        ),
      },
      closed,
    ),
    akName: Hex,
    referencePolicy: Type.Union([Type.String(), Type.Null()]),
    createdAt: Time,
    pendingExpiresAt: Nullable(Time),
    released: Nullable(Type.Object({ at: Time, by: Type.String() }, closed)),
    counters: Nullable(
      Type.Object({ resetCount: Type.Integer(), restartCount: Type.Integer() }, closed),
    ),
    lastQuote: Nullable(
      Type.Object(
        {
          clock: Type.String({ pattern: '^[0-9]{1,20}$' }),
          firmwareVersion: Type.String({ pattern: '^[0-9a-f]{16}$' }),
        },
        closed,
      ),
    ),
    lastAttestation: Type.Union([
      Type.Object(
        {
          attestationId: Type.String(),
          verdict: Type.Union([Type.Literal('trusted'), Type.Literal('untrusted')]),
          reasons: Type.Array(Type.String()),
          at: Time,
        },
        closed,
      ),
      Type.Null(),
    ]),
  },
  closed,
);

const RuntimeList = Type.Object(
  { runtimes: Type.Array(RuntimeReply), nextCursor: Nullable(Type.String()) },
  closed,
);

const ListQuery = Type.Object(
  {
    state: Type.Optional(State),
    /** `name=value`: the assigned label. */
    label: Type.Optional(
      Type.String({ maxLength: 320, pattern: '^[A-Za-z0-9._/-]{1,63}=[\\s\\S]{0,256}$' }),
    ),
    referencePolicy: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' })),
    verdict: Type.Optional(
      Type.Union([Type.Literal('trusted'), Type.Literal('untrusted'), Type.Literal('none')]),
    ),
    after: Type.Optional(Type.String({ maxLength: 64, pattern: '^rt_[A-Za-z0-9_-]+$' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  },
  closed,
);

const SessionKey = Type.Object(
  {
    kty: Type.Literal('EC'),
    crv: Type.Literal('P-256'),
    x: Type.String({ minLength: 43, maxLength: 43 }),
    y: Type.String({ minLength: 43, maxLength: 43 }),
  },
  closed,
);

const AttestBody = Type.Object({ ...QuoteEvidence, sessionKey: SessionKey }, closed);

const AttestReply = Type.Object(
  {
    attestationId: Type.String(),
    verdict: Type.Union([Type.Literal('trusted'), Type.Literal('untrusted')]),
    reasons: Type.Array(Type.String()),
    validUntil: Type.Union([Time, Type.Null()]),
    pcrDigestHex: Hex,
    resetCount: Type.Integer(),
    restartCount: Type.Integer(),
    measuredBoot: Type.Optional(
      Type.Object({ events: Type.Integer(), imaEntries: Type.Integer() }, closed),
    ),
  },
  closed,
);

const errorStatuses = [400, 403, 404, 409, 422, 429, 503] as const;

/** What the runtime routes call: the attestation service (a test may stand in for it). */
export type RuntimesRoutesService = Pick<
  AttestationService,
  | 'enroll'
  | 'activate'
  | 'listRuntimes'
  | 'assignLabels'
  | 'release'
  | 'getRuntime'
  | 'approve'
  | 'revoke'
  | 'challenge'
  | 'attest'
  | 'attestationBodyLimit'
>;

export const runtimesRoutes: FastifyPluginAsyncTypebox<{
  attestation: RuntimesRoutesService;
  /** Counts each attestation verdict. */
  metrics?: AttestationMetrics;
  /**
   * The grants side of a runtime revoke (GrantService.revokeRuntime, wired in src/http/app.ts
   * from the composition root's services): its live grants and their descendants.
   */
  revokeGrants?: (
    runtimeId: string,
    actor: string,
  ) => Promise<{ revoked: readonly string[]; auditPending?: boolean }>;
}> = (app, opts) => {
  const svc = opts.attestation;

  app.post(
    '/v1/runtimes',
    {
      // EK certificate (8 KiB of base64), EK and AK publics, 32 labels: about 22 KiB at most.
      ...bodyLimit('medium'),
      config: { actor: 'runtime', rateLimit: { bucket: 'enroll', perRuntime: false } },
      schema: {
        body: EnrollBody,
        response: { 201: EnrollReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) => reply.code(201).send(await svc.enroll(request.body)),
  );

  app.post(
    '/v1/runtimes/:runtimeId/activation',
    {
      ...bodyLimit('tiny'),
      config: { actor: 'runtime', rateLimit: { bucket: 'enroll' } },
      schema: {
        params: RuntimeParams,
        body: Type.Object({ secret: Base64(128) }, closed),
        response: { 200: StateReply, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => svc.activate(request.params.runtimeId, request.body),
  );

  app.get(
    '/v1/runtimes',
    {
      config: {
        role: ['operator', 'auditor'],
        rateLimit: { bucket: 'inventory', perRuntime: false },
      },
      schema: {
        querystring: ListQuery,
        response: { 200: RuntimeList, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => {
      const q = request.query;
      const eq = q.label?.indexOf('=') ?? -1;
      return svc.listRuntimes({
        limit: q.limit ?? 50,
        ...(q.state === undefined ? {} : { state: q.state }),
        ...(q.label === undefined ? {} : { label: [q.label.slice(0, eq), q.label.slice(eq + 1)] }),
        ...(q.referencePolicy === undefined ? {} : { referencePolicy: q.referencePolicy }),
        ...(q.verdict === undefined ? {} : { verdict: q.verdict }),
        ...(q.after === undefined ? {} : { after: q.after }),
      });
    },
  );

  app.put(
    '/v1/runtimes/:runtimeId/labels',
    {
      // 32 labels of 63 + 256 characters, JSON-escaped.
      ...bodyLimit('medium'),
      config: { role: 'operator', rateLimit: { bucket: 'inventory', perRuntime: false } },
      schema: {
        params: RuntimeParams,
        body: Type.Object({ labels: Labels }, closed),
        response: { 200: RuntimeReply, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => {
      const actor = requireActor(request);
      return svc.assignLabels(request.params.runtimeId, request.body.labels, actor);
    },
  );

  app.post(
    '/v1/runtimes/:runtimeId/release',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator', rateLimit: { bucket: 'inventory', perRuntime: false } },
      schema: {
        params: RuntimeParams,
        response: { 200: RuntimeReply, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => svc.release(request.params.runtimeId, requireActor(request)),
  );

  app.get(
    '/v1/runtimes/:runtimeId',
    {
      config: { role: ['operator', 'auditor'] },
      schema: {
        params: RuntimeParams,
        response: { 200: RuntimeReply, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => svc.getRuntime(request.params.runtimeId),
  );

  app.post(
    '/v1/runtimes/:runtimeId/approve',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator' },
      schema: {
        params: RuntimeParams,
        response: { 200: StateReply, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => svc.approve(request.params.runtimeId),
  );

  app.post(
    '/v1/runtimes/:runtimeId/revoke',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator' },
      schema: {
        params: RuntimeParams,
        response: { 200: RevokeReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request) => {
      // The authenticated operator, never a default name (before anything changes).
      const actor = requireActor(request).id;
      const out = await svc.revoke(request.params.runtimeId);
      if (opts.revokeGrants === undefined) return out;
      // After the runtime: no new grant is issued to it while its grants are revoked. A
      // failure here answers its error (the runtime stays revoked); redeem refuses the
      // grants of a revoked runtime whatever this cascade did.
      const { revoked, auditPending } = await opts.revokeGrants(out.runtimeId, actor);
      return {
        ...out,
        grantsRevoked: revoked.length,
        ...(auditPending === true ? { grantsAuditPending: true } : {}),
      };
    },
  );

  app.post(
    '/v1/runtimes/:runtimeId/challenges',
    {
      ...bodyLimit('tiny'),
      config: { actor: 'runtime', rateLimit: { bucket: 'challenges' } },
      schema: {
        params: RuntimeParams,
        response: {
          201: Type.Object({ nonce: Type.String(), expiresAt: Time }, closed),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request, reply) => reply.code(201).send(await svc.challenge(request.params.runtimeId)),
  );

  app.post(
    '/v1/runtimes/:runtimeId/attestations',
    {
      // Quote, signature and every PCR of four banks (under 20 KiB), plus the event log and
      // IMA list within their configured limits.
      bodyLimit: Math.max(svc.attestationBodyLimit, bodyLimit('medium').bodyLimit),
      config: { actor: 'runtime', rateLimit: { bucket: 'attestations' } },
      schema: {
        params: RuntimeParams,
        body: AttestBody,
        response: { 201: AttestReply, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) => {
      const answer = await meterAttestation(opts.metrics, () =>
        svc.attest(request.params.runtimeId, request.body),
      );
      return reply.code(201).send(answer);
    },
  );

  return Promise.resolve();
};
