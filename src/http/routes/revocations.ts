/**
 * docs/protocol.md §3.1: the revocation feed and its signed snapshot, for enrolled gateways
 * (`config.actor: 'gateway'`: the auth plugin checks their token before anything here).
 *
 * The feed is a long-poll (`GET /v1/revocations?since=SEQ&wait=SECONDS`), not server-sent
 * events: every answer is one bounded JSON page with a response schema, it passes through
 * any proxy that buffers (nginx does by default), and the appliance keeps no queue per
 * subscriber: a waiting subscriber is a timer and a callback, and what it has not read is
 * in the store, not in memory. An answer not taken by the subscriber within
 * `sendTimeoutMs` closes its connection (a slow subscriber is dropped, never the feed).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RevocationFeed } from '../../grants/revocation-feed.js';
import type { RevocationSnapshots } from '../../grants/revocation-snapshot.js';
import type { GrantorMetrics } from '../../shared/metrics.js';
import { errorResponses } from '../schemas.js';

const closed = { additionalProperties: false } as const;
const Time = Type.String({ format: 'date-time' });
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

const GrantEvent = Type.Object(
  {
    seq: Seq,
    kind: Type.Literal('grant'),
    grantId: Type.String(),
    runtimeId: Type.String(),
    at: Time,
    exp: Type.Integer(),
  },
  closed,
);
const RuntimeEvent = Type.Object(
  {
    seq: Seq,
    kind: Type.Literal('runtime'),
    runtimeId: Type.String(),
    at: Time,
    exp: Type.Integer(),
  },
  closed,
);

const FeedQuery = Type.Object(
  {
    since: Seq,
    /** Seconds to wait for a newer event when there is none; 0 answers at once. */
    wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 60, default: 0 })),
  },
  closed,
);

const FeedReply = Type.Object(
  { events: Type.Array(Type.Union([GrantEvent, RuntimeEvent])), head: Seq, floor: Seq },
  closed,
);

const SnapshotReply = Type.Object(
  { snapshot: Type.String(), seq: Seq, issuedAt: Time, expiresAt: Time },
  closed,
);

const errorStatuses = [400, 401, 403, 500] as const;

export interface RevocationRouteMetrics {
  /** A subscriber's connection closed because it did not take its answer in time. */
  onSubscriberDropped?(): void;
}

/** The route's events as the appliance's Prometheus counters. */
export function revocationRouteMetrics(metrics: GrantorMetrics): RevocationRouteMetrics {
  return {
    onSubscriberDropped: () => {
      metrics.revocationFeedSubscribersDropped.inc();
    },
  };
}

export const revocationRoutes: FastifyPluginAsyncTypebox<{
  feed: RevocationFeed;
  snapshots: RevocationSnapshots;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  now?: () => number;
  /** Longest time an answer may take to be written to the subscriber. Default 10 000 ms. */
  sendTimeoutMs?: number;
  metrics?: RevocationRouteMetrics;
}> = (app, opts) => {
  const clock = opts.now ?? Date.now;
  const now = (): Date => new Date(clock());
  const sendTimeoutMs = opts.sendTimeoutMs ?? 10_000;

  app.get(
    '/v1/revocations',
    {
      config: { actor: 'gateway' },
      schema: {
        querystring: FeedQuery,
        response: { 200: FeedReply, ...errorResponses(...errorStatuses, 410, 503) },
      },
    },
    async (request, reply) => {
      const left = new AbortController();
      const res = reply.raw;
      // The subscriber left while it waited: stop waiting for it.
      res.once('close', () => {
        if (!res.writableFinished) left.abort();
      });
      const page = await opts.feed.since(
        request.query.since,
        (request.query.wait ?? 0) * 1000,
        left.signal,
      );
      // A subscriber that does not take its answer is dropped, never waited for.
      const timer = setTimeout(() => {
        if (res.writableFinished) return;
        opts.metrics?.onSubscriberDropped?.();
        request.raw.socket.destroy();
      }, sendTimeoutMs);
      timer.unref();
      res.once('close', () => {
        clearTimeout(timer);
      });
      return reply.code(200).header('cache-control', 'no-store').send(page);
    },
  );

  app.get(
    '/v1/revocations/snapshot',
    {
      config: { actor: 'gateway' },
      schema: { response: { 200: SnapshotReply, ...errorResponses(...errorStatuses, 503) } },
    },
    async (_request, reply) => {
      const s = await opts.snapshots.current(now());
      return reply
        .code(200)
        .header('cache-control', 'no-store')
        .send({
          snapshot: s.snapshot,
          seq: s.seq,
          issuedAt: new Date(s.iat * 1000).toISOString(),
          expiresAt: new Date(s.exp * 1000).toISOString(),
        });
    },
  );

  return Promise.resolve();
};
