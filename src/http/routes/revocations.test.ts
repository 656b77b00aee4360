/**
 * The revocation routes on a real Fastify server, the real auth plugin and real LevelDB
 * stores: the subscriber bound over HTTP, a slow subscriber dropped (a real TCP client that
 * does not read its answer) while the appliance keeps serving, and a `since` older than
 * what the feed keeps.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LevelGrantStore } from '../../grants/grant-store.level.js';
import { RevocationFeed, type RevocationFeedSettings } from '../../grants/revocation-feed.js';
import { RevocationSnapshots } from '../../grants/revocation-snapshot.js';
import { LevelGatewayStore } from '../../operators/gateway-store.level.js';
import { GatewayRegistry } from '../../operators/gateways.js';
import { createFakeOperatorTokens } from '../../operators/token-store.memory.js';
import { openDatabase, type Database } from '../../shared/db.level.js';
import { createMetrics } from '../../shared/metrics.js';
import { createServer, type App } from '../app.js';
import { operatorAuth } from '../plugins/auth.js';
import { revocationRouteMetrics, revocationRoutes } from './revocations.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(settings: RevocationFeedSettings, sendTimeoutMs?: number) {
  const dir = await mkdtemp(join(tmpdir(), 'grantor-revocation-routes-'));
  const db: Database = await openDatabase(dir);
  cleanup.push(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });
  const feed = new RevocationFeed(new LevelGrantStore(db), settings);
  const gateways = new GatewayRegistry(new LevelGatewayStore(db));
  const { token } = await gateways.enroll({ name: 'gw', audiences: ['gw_tickets'] }, 'cli');
  const metrics = createMetrics();
  const app: App = createServer();
  await app.register(operatorAuth, {
    tokens: createFakeOperatorTokens(),
    gateways,
  });
  await app.register(revocationRoutes, {
    feed,
    snapshots: new RevocationSnapshots(feed, undefined, { issuer: 'test' }),
    ...(sendTimeoutMs === undefined ? {} : { sendTimeoutMs }),
    metrics: revocationRouteMetrics(metrics),
  });
  await app.ready();
  cleanup.push(() => app.close());
  const dropped = async (): Promise<string | undefined> =>
    (await metrics.registry.metrics())
      .split('\n')
      .find((l) => l.startsWith('grantor_revocation_feed_subscribers_dropped_total '));
  return { app, feed, token, dropped, headers: { authorization: `Bearer ${token}` } };
}

const event = (i: number, exp = 4_000_000_000) =>
  ({
    kind: 'grant',
    grantId: `gr_${String(i).padStart(24, '0')}`,
    runtimeId: 'rt_0123456789abcdef',
    at: '2026-01-01T00:00:00.000Z',
    exp,
  }) as const;

const codeOf = (body: string) => (JSON.parse(body) as { error: { code: string } }).error.code;

describe('GET /v1/revocations', () => {
  it('answers 503 revocation_feed_full past the subscriber bound; the waiting one gets the next event', async () => {
    const s = await setup({ maxSubscribers: 1, maxWaitMs: 600_000 });
    const waiting = s.app.inject({ url: '/v1/revocations?since=0&wait=60', headers: s.headers });
    while (s.feed.waiting < 1) await new Promise((r) => setTimeout(r, 5));
    const full = await s.app.inject({ url: '/v1/revocations?since=0&wait=60', headers: s.headers });
    expect(full.statusCode).toBe(503);
    expect(codeOf(full.body)).toBe('revocation_feed_full');
    // Answering at once holds no place: not refused.
    const now = await s.app.inject({ url: '/v1/revocations?since=0', headers: s.headers });
    expect(now.statusCode).toBe(200);
    expect(now.json()).toEqual({ events: [], head: 0, floor: 0 });
    await s.feed.apply([], [event(1)]);
    const answered = await waiting;
    expect(answered.statusCode).toBe(200);
    expect(answered.json<{ events: { seq: number }[] }>().events.map((e) => e.seq)).toEqual([1]);
  });

  it('answers 410 revocation_snapshot_required for a since older than the feed keeps', async () => {
    const s = await setup({ graceSeconds: 0 });
    await s.feed.apply([], [event(1, 100), event(2)]);
    expect(await s.feed.prune(200)).toBe(1);
    const old = await s.app.inject({ url: '/v1/revocations?since=0', headers: s.headers });
    expect(old.statusCode).toBe(410);
    expect(codeOf(old.body)).toBe('revocation_snapshot_required');
    const kept = await s.app.inject({ url: '/v1/revocations?since=1', headers: s.headers });
    expect(kept.json()).toMatchObject({ head: 2, floor: 1 });
  });

  it('drops a subscriber that does not take its answer, and goes on serving', async () => {
    // A page larger than the kernel buffers a reader that never reads can absorb (~4 MiB).
    const s = await setup({ pageSize: 100_000 }, 500);
    const n = 60_000;
    await s.feed.apply(
      [],
      Array.from({ length: n }, (_, i) => event(i)),
    );
    const address = await s.app.listen({ port: 0, host: '127.0.0.1' });
    const port = Number(new URL(address).port);
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        `GET /v1/revocations?since=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${s.token}\r\n\r\n`,
      );
      // Never read the answer (a paused socket does not notice the reset either).
      socket.pause();
    });
    socket.on('error', () => undefined);
    cleanup.push(() => {
      socket.destroy();
      return Promise.resolve();
    });
    while ((await s.dropped())?.endsWith(' 0') !== false)
      await new Promise((r) => setTimeout(r, 20));
    expect(await s.dropped()).toBe('grantor_revocation_feed_subscribers_dropped_total 1');
    const after = await s.app.inject({ url: `/v1/revocations?since=${n}`, headers: s.headers });
    expect(after.statusCode).toBe(200);
  }, 60_000);
});
