/**
 * Dual-control approvals (issue 7): open a request for a named act on a target, approve
 * it, read them. The act itself (key destroy, EK CA replace, reference policy disable)
 * lives with its domain's route, which calls `approvals.consume(act, params)` first.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  ApprovalActSchema,
  ApprovalParamsSchema,
  ApprovalRecordSchema,
} from '../../operators/approval-store.port.js';
import type { Approvals } from '../../operators/approvals.js';
import { OPERATOR_AUTH_PLUGIN, requireActor } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

const IdParams = Type.Object(
  { approvalId: Type.String({ pattern: '^apr_[0-9a-f]{16}$' }) },
  { additionalProperties: false },
);

const errorStatuses = [400, 401, 403, 503] as const;
const BODY_LIMIT = 8 * 1024;

export const approvalRoutes: FastifyPluginAsyncTypebox<{ approvals: Approvals }> = (
  app,
  { approvals },
) => {
  // Every route here needs a role: without the auth hook they would be open to anyone.
  if (!app.hasPlugin(OPERATOR_AUTH_PLUGIN)) {
    return Promise.reject(new TypeError('approvalRoutes needs operatorAuth registered first'));
  }
  app.post(
    '/v1/approvals',
    {
      bodyLimit: BODY_LIMIT,
      config: { role: ['operator', 'key_custodian'] },
      schema: {
        body: Type.Object(
          { act: ApprovalActSchema, params: ApprovalParamsSchema },
          { additionalProperties: false },
        ),
        // 409: approval_request_open (one open request per act and parameters),
        // approval_request_limit (too many open requests by this person).
        response: { 201: ApprovalRecordSchema, ...errorResponses(...errorStatuses, 409) },
      },
    },
    async (request, reply) => {
      const record = await approvals.request(
        requireActor(request),
        request.body.act,
        request.body.params,
      );
      return reply.code(201).send(record);
    },
  );

  app.post(
    '/v1/approvals/:approvalId/approve',
    {
      bodyLimit: 1024,
      config: { role: ['operator', 'key_custodian'] },
      schema: {
        params: IdParams,
        response: {
          200: ApprovalRecordSchema,
          ...errorResponses(...errorStatuses, 404, 409),
        },
      },
    },
    (request) => approvals.approve(requireActor(request), request.params.approvalId),
  );

  app.get(
    '/v1/approvals',
    {
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { approvals: Type.Array(ApprovalRecordSchema) },
            { additionalProperties: false },
          ),
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request) => ({ approvals: await approvals.list(request.query.limit) }),
  );

  app.get(
    '/v1/approvals/:approvalId',
    {
      config: { role: ['auditor', 'operator', 'key_custodian'] },
      schema: {
        params: IdParams,
        response: { 200: ApprovalRecordSchema, ...errorResponses(...errorStatuses, 404) },
      },
    },
    (request) => approvals.get(request.params.approvalId),
  );
  return Promise.resolve();
};
