/**
 * GET /v1/audit/export (auditor): the live evidence bundle (src/audit/bundle.ts), streamed
 * as NDJSON while the appliance serves. The range is checked and the (NV-certified)
 * checkpoint taken before the first byte, so a refusal is an ordinary error answer; a
 * failure later ends the stream without its end record, which the verifier calls truncated.
 */
import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { openBundle, type BundlePolicySet } from '../../audit/bundle.js';
import { factId } from '../../audit/facts.js';
import { MAX_PERIOD } from '../../audit/periods.js';
import type { AuditService } from '../../audit/service.js';
import { requireActor } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Size = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

export interface AuditExportOptions {
  readonly audit: AuditService;
  /** A set from the policy archive by hash, or undefined (no archive, or not kept). */
  readonly policySet: (hash: string) => Promise<BundlePolicySet | undefined>;
  /** Most entries per bundle (default bundle.ts DEFAULT_MAX_BUNDLE_ENTRIES). */
  readonly maxEntries?: number;
}

/** Sends a stream of NDJSON lines (the typed reply only knows the schema's JSON shapes). */
function ndjson(reply: FastifyReply, body: Readable): FastifyReply {
  return reply
    .type('application/x-ndjson; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(body);
}

export const auditExportRoutes: FastifyPluginAsyncTypebox<AuditExportOptions> = (
  app,
  { audit, policySet, maxEntries },
) => {
  app.get(
    '/v1/audit/export',
    {
      // Auditors only (it carries request bodies); each call is one NV_Certify of TPM work.
      config: { role: 'auditor', rateLimit: { bucket: 'certify', perRuntime: false } },
      schema: {
        produces: ['application/x-ndjson'],
        querystring: Type.Object(
          {
            from: Type.Optional(Seq),
            to: Type.Optional(Size),
            since: Type.Optional(Size),
            // At most 32 bytes: it becomes NV_Certify's qualifyingData.
            nonce: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2}){1,32}$' })),
            // A frozen log period: its bundle carries the later periods' links.
            period: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PERIOD })),
          },
          { additionalProperties: false },
        ),
        response: {
          // NDJSON, `grantor-audit-bundle/1` (docs/protocol.md §4.2), one record a line.
          200: { type: 'string', description: 'grantor-audit-bundle/1 NDJSON' },
          ...errorResponses(400, 401, 403, 404, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { from, to, since, nonce, period } = request.query;
      const opened = await openBundle(
        { audit, policySet, ...(maxEntries === undefined ? {} : { maxEntries }) },
        {
          ...(from === undefined ? {} : { from }),
          ...(to === undefined ? {} : { to }),
          ...(since === undefined ? {} : { since }),
          ...(nonce === undefined ? {} : { nonce: Buffer.from(nonce, 'hex') }),
          ...(period === undefined ? {} : { period }),
        },
      );
      return ndjson(reply, Readable.from(opened.lines()));
    },
  );

  app.post(
    '/v1/audit/periods/:period/retire',
    {
      // Retention (src/audit/retention.ts): an operator act, recorded as an entry of its own.
      config: { role: 'operator' },
      schema: {
        params: Type.Object(
          { period: Type.Integer({ minimum: 0, maximum: MAX_PERIOD }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              period: Type.Integer({ minimum: 0 }),
              from: Type.Integer({ minimum: 0 }),
              to: Type.Integer({ minimum: 0 }),
              bundleDigest: Type.String({ pattern: '^[0-9a-f]{64}$' }),
              file: Type.String(),
              retiredAt: Type.String(),
              actor: Type.String(),
              state: Type.Literal('done'),
            },
            { additionalProperties: false },
          ),
          ...errorResponses(400, 401, 403, 404, 409, 422, 429, 503),
        },
      },
    },
    async (request) => {
      const done = await audit.retirePeriod(
        request.params.period,
        factId(requireActor(request).id),
        policySet,
      );
      return { ...done, state: 'done' as const };
    },
  );
  return Promise.resolve();
};
