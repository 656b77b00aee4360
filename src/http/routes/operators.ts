/**
 * The operator registry and credentials, while the appliance runs (issue 14):
 *
 * - `GET /v1/operators`, `GET /v1/operators/{operatorId}`: the people and their roles;
 * - `PUT /v1/operators/{operatorId}`, `DELETE /v1/operators/{operatorId}`: register, change
 *   or remove a person, dual-controlled (acts `operator.put`, `operator.remove`);
 * - `GET|POST /v1/operator-tokens`, `POST /v1/operator-tokens/{tokenId}/revoke`: tokens,
 *   issued only to the person asking, revoked by their person or by an operator;
 * - `GET|POST /v1/operator-certificates/revocations`: the client-certificate denylist.
 *
 * Every change is audited by the services (src/operators/events.ts) before it takes effect.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Approvals } from '../../operators/approvals.js';
import { CertificateRevocationSchema } from '../../operators/cert-revocations.js';
import { ForbiddenError, OperatorNotFoundError } from '../../operators/errors.js';
import { byActor } from '../../operators/events.js';
import type { Operators } from '../../operators/index.js';
import { PersonRecordSchema, type PersonRecord } from '../../operators/person-store.port.js';
import { RoleSchema, TokenRecordSchema } from '../../operators/token-store.port.js';
import { MAX_TOKEN_TTL_SECONDS } from '../../operators/tokens.js';
import { OPERATOR_AUTH_PLUGIN, requireActor } from '../plugins/auth.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { errorResponses } from '../schemas.js';

const errorStatuses = [400, 401, 403, 503] as const;

const OperatorIdParams = Type.Object(
  { operatorId: Type.String({ minLength: 1, maxLength: 128 }) },
  { additionalProperties: false },
);

const PersonBody = Type.Object(
  {
    displayName: Type.String({ minLength: 1, maxLength: 128 }),
    roles: Type.Array(RoleSchema, { minItems: 1, maxItems: 3, uniqueItems: true }),
    emails: Type.Optional(Type.Array(Type.String({ maxLength: 120 }), { maxItems: 4 })),
  },
  { additionalProperties: false },
);

const TokenInfoSchema = Type.Object(
  {
    ...Type.Omit(TokenRecordSchema, ['secretHash', 'person']).properties,
    person: Type.String(),
  },
  { additionalProperties: false },
);

/** The approval parameters of `operator.put`: the whole normalised record, readable. */
export function operatorPutParams(p: PersonRecord): Record<string, string> {
  return {
    id: p.id,
    displayName: p.displayName,
    roles: p.roles.join(','),
    emails: p.emails.join(','),
  };
}

export const operatorRoutes: FastifyPluginAsyncTypebox<{
  operators: Operators;
  approvals: Pick<Approvals, 'perform'>;
}> = (app, { operators, approvals }) => {
  if (!app.hasPlugin(OPERATOR_AUTH_PLUGIN)) {
    return Promise.reject(new TypeError('operatorRoutes needs operatorAuth registered first'));
  }
  const { people, tokens, revocations } = operators;

  app.get(
    '/v1/operators',
    {
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        response: {
          200: Type.Object(
            { operators: Type.Array(PersonRecordSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async () => ({ operators: await people.list() }),
  );

  app.get(
    '/v1/operators/:operatorId',
    {
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        params: OperatorIdParams,
        response: { 200: PersonRecordSchema, ...errorResponses(...errorStatuses, 404) },
      },
    },
    (request) => people.get(request.params.operatorId),
  );

  app.put(
    '/v1/operators/:operatorId',
    {
      ...bodyLimit('small'),
      config: { role: 'operator' },
      schema: {
        params: OperatorIdParams,
        body: PersonBody,
        response: { 200: PersonRecordSchema, ...errorResponses(...errorStatuses, 404, 409) },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      // Validated and normalised first; the approvals are bound to the normalised record.
      const prepared = await people.prepare(request.params.operatorId, request.body);
      return approvals.perform('operator.put', operatorPutParams(prepared), () =>
        people.put(prepared.id, prepared, byActor(actor)),
      );
    },
  );

  app.delete(
    '/v1/operators/:operatorId',
    {
      config: { role: 'operator' },
      schema: {
        params: OperatorIdParams,
        response: { 200: PersonRecordSchema, ...errorResponses(...errorStatuses, 404, 409) },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const person = await people.get(request.params.operatorId);
      return approvals.perform(
        'operator.remove',
        { id: person.id },
        () => people.remove(person.id, byActor(actor)),
        async () => {
          if ((await people.get(person.id)).removedAt !== undefined) {
            throw new OperatorNotFoundError(person.id);
          }
        },
      );
    },
  );

  app.get(
    '/v1/operator-tokens',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        response: {
          200: Type.Object(
            { tokens: Type.Array(TokenInfoSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async () => ({ tokens: await tokens.list() }),
  );

  app.post(
    '/v1/operator-tokens',
    {
      ...bodyLimit('tiny'),
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        body: Type.Object(
          {
            role: RoleSchema,
            ttlSeconds: Type.Optional(
              Type.Integer({ minimum: 60, maximum: MAX_TOKEN_TTL_SECONDS }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object(
            { token: Type.String(), info: TokenInfoSchema },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request, reply) => {
      const created = await tokens.createForSelf(
        requireActor(request),
        request.body.role,
        request.body.ttlSeconds,
      );
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  app.post(
    '/v1/operator-tokens/:tokenId/revoke',
    {
      ...bodyLimit('tiny'),
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        params: Type.Object(
          { tokenId: Type.String({ pattern: '^tok_[0-9a-f]{16}$' }) },
          { additionalProperties: false },
        ),
        response: { 200: TokenInfoSchema, ...errorResponses(...errorStatuses, 404) },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const token = await tokens.get(request.params.tokenId);
      // A person revokes their own tokens; an operator anyone's (revoking only takes power).
      if (actor.role !== 'operator' && token.person !== actor.person) {
        throw new ForbiddenError("only an operator revokes another person's token");
      }
      return tokens.revoke(token.id, byActor(actor));
    },
  );

  app.get(
    '/v1/operator-certificates/revocations',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        response: {
          200: Type.Object(
            { revocations: Type.Array(CertificateRevocationSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async () => ({ revocations: await revocations.list() }),
  );

  app.post(
    '/v1/operator-certificates/revocations',
    {
      ...bodyLimit('small'),
      config: { role: 'operator' },
      schema: {
        body: Type.Object(
          {
            pem: Type.Optional(Type.String({ minLength: 1, maxLength: 6000 })),
            id: Type.Optional(Type.String({ maxLength: 64 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: CertificateRevocationSchema, ...errorResponses(...errorStatuses) },
      },
    },
    (request) => revocations.revoke(request.body, byActor(requireActor(request))),
  );
  return Promise.resolve();
};
