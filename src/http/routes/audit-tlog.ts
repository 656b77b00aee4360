/**
 * The audit log as a C2SP tiled transparency log (docs/protocol.md §4.4) under
 * `/v1/audit/tlog/<period>/`: the signed checkpoint, the hash tiles and the entry bundles, so
 * that a standard tlog-tiles client verifies inclusion and consistency on its own. The
 * checkpoint and hash tiles are public like the JSON proofs (they reveal the tree's size and
 * hashes, no entry); entry bundles are for auditors (entry hashes can be confirmed against
 * guessed entries). Full tiles never change: cached for a year; partial ones and the
 * checkpoint are not cached.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { AuditTilePathError } from '../../audit/errors.js';
import type { AuditService, LogService } from '../../audit/service.js';
import { TILE_WIDTH, parseTilePath, type TileRequest } from '../../audit/tiles.js';
import { errorResponses } from '../schemas.js';

const Period = Type.String({ pattern: '^(0|[1-9][0-9]{0,15})$' });

const errorStatuses = [400, 404, 500, 503] as const;

const binary = { type: 'string', description: 'application/octet-stream bytes' } as const;

/** The log of period `period` (docs/protocol.md §4.5): the current one or a frozen one. */
function periodLog(audit: AuditService, period: string): Promise<LogService> {
  return audit.inPeriod(Number(period));
}

function sendTile(
  reply: FastifyReply,
  request: TileRequest,
  bytes: Buffer,
  scope: 'public' | 'private',
): FastifyReply {
  return reply
    .type('application/octet-stream')
    .header(
      'cache-control',
      request.width === TILE_WIDTH ? `${scope}, max-age=31536000, immutable` : 'no-store',
    )
    .send(bytes);
}

export const auditTlogRoutes: FastifyPluginAsyncTypebox<{ audit: AuditService }> = (
  app,
  { audit },
) => {
  // Refusals and answers of unknown tiles must not be kept by a cache: the tree grows.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });

  app.get(
    '/v1/audit/tlog/:period/checkpoint',
    {
      config: { public: true },
      schema: {
        produces: ['text/plain'],
        params: Type.Object({ period: Period }, { additionalProperties: false }),
        response: {
          200: { type: 'string', description: 'C2SP signed note' },
          ...errorResponses(...errorStatuses),
        },
      },
    },
    async (request, reply) => {
      const log = await periodLog(audit, request.params.period);
      const { note } = await log.checkpoint();
      return reply.type('text/plain; charset=utf-8').send(note);
    },
  );

  app.get(
    '/v1/audit/tlog/:period/tile/entries/*',
    {
      config: { role: 'auditor' },
      schema: {
        produces: ['application/octet-stream'],
        params: Type.Object(
          { period: Period, '*': Type.String() },
          { additionalProperties: false },
        ),
        response: { 200: binary, ...errorResponses(...errorStatuses, 401, 403) },
      },
    },
    async (request, reply) => {
      const tile = parseTilePath(`entries/${request.params['*']}`);
      const log = await periodLog(audit, request.params.period);
      return sendTile(reply, tile, await log.tlogResource(tile), 'private');
    },
  );

  app.get(
    '/v1/audit/tlog/:period/tile/*',
    {
      config: { public: true },
      schema: {
        produces: ['application/octet-stream'],
        params: Type.Object(
          { period: Period, '*': Type.String() },
          { additionalProperties: false },
        ),
        response: { 200: binary, ...errorResponses(...errorStatuses) },
      },
    },
    async (request, reply) => {
      const tile = parseTilePath(request.params['*']);
      // Entry bundles are the auditor route's alone, whatever the router matched.
      if (tile.kind !== 'hashes') throw new AuditTilePathError('entry bundles: tile/entries/<N>');
      const log = await periodLog(audit, request.params.period);
      return sendTile(reply, tile, await log.tlogResource(tile), 'public');
    },
  );

  return Promise.resolve();
};
