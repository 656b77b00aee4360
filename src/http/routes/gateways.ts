/**
 * Enrolled gateways (issue 18): `POST /v1/gateways` (operator) enrolls one for its
 * audiences and answers its token once; `GET /v1/gateways` (auditor, operator) lists them;
 * `POST /v1/gateways/{gatewayId}/revoke` (operator) revokes one. Audited by the registry
 * (src/operators/gateways.ts) before each change takes effect.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { GatewayRecordSchema, MAX_GATEWAY_AUDIENCES } from '../../operators/gateway-store.port.js';
import type { GatewayRegistry } from '../../operators/gateways.js';
import { MAX_TOKEN_TTL_SECONDS } from '../../operators/tokens.js';
import { requireActor } from '../plugins/auth.js';
import { bodyLimit } from '../plugins/body-limit.js';
import { errorResponses } from '../schemas.js';

const closed = { additionalProperties: false } as const;
const errorStatuses = [400, 401, 403, 503] as const;

const GatewayInfoSchema = Type.Object(
  { ...Type.Omit(GatewayRecordSchema, ['secretHash']).properties },
  closed,
);

export const gatewayRoutes: FastifyPluginAsyncTypebox<{ gateways: GatewayRegistry }> = (
  app,
  opts,
) => {
  const { gateways } = opts;

  app.get(
    '/v1/gateways',
    {
      config: { role: ['auditor', 'operator'] },
      schema: {
        response: {
          200: Type.Object({ gateways: Type.Array(GatewayInfoSchema) }, closed),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async () => ({ gateways: await gateways.list() }),
  );

  app.post(
    '/v1/gateways',
    {
      ...bodyLimit('small'),
      config: { role: 'operator' },
      schema: {
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
            audiences: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
              minItems: 1,
              maxItems: MAX_GATEWAY_AUDIENCES,
            }),
            ttlSeconds: Type.Optional(
              Type.Integer({ minimum: 60, maximum: MAX_TOKEN_TTL_SECONDS }),
            ),
          },
          closed,
        ),
        response: {
          201: Type.Object({ token: Type.String(), gateway: GatewayInfoSchema }, closed),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request, reply) => {
      const enrolled = await gateways.enroll(request.body, requireActor(request));
      return reply.code(201).header('cache-control', 'no-store').send(enrolled);
    },
  );

  app.post(
    '/v1/gateways/:gatewayId/revoke',
    {
      ...bodyLimit('tiny'),
      config: { role: 'operator' },
      schema: {
        params: Type.Object({ gatewayId: Type.String({ pattern: '^gw_[0-9a-f]{16}$' }) }, closed),
        response: { 200: GatewayInfoSchema, ...errorResponses(...errorStatuses, 404) },
      },
    },
    async (request) => gateways.revoke(request.params.gatewayId, requireActor(request)),
  );

  return Promise.resolve();
};
