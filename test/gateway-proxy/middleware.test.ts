/**
 * The SDK as middleware (Fastify plugin, node `http` wrapper), end to end against the real
 * appliance (test/gateway-proxy/harness.ts): the handler runs only for a grant that names
 * the request and was redeemed here, once; the outcome is reported from its status.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Enforcer,
  JwksClient,
  PopChallenges,
  RedemptionClient,
  RouteTable,
  grantEnforcement,
  nodeEnforcement,
} from '../../src/gateway/index.js';
import { AUDIENCE, ISSUER, startAppliance, type Appliance } from './harness.js';

let appliance: Appliance;
let enforcer: Enforcer;
let app: FastifyInstance;
let plain: Server;
let plainUrl: string;
const ran: string[] = [];

beforeAll(async () => {
  appliance = await startAppliance();
  enforcer = new Enforcer({
    issuer: ISSUER,
    audience: AUDIENCE,
    keys: new JwksClient({ url: new URL('.well-known/jwks.json', appliance.url).toString() }),
    redeemer: new RedemptionClient({
      applianceUrl: appliance.url,
      audience: AUDIENCE,
      gatewayToken: appliance.rig.gateway.token,
    }),
    challenges: new PopChallenges(),
    routes: RouteTable.parse([
      {
        method: 'POST',
        path: '/tickets/:id/read',
        action: 'tickets.read',
        resource: 'ticket:{id}',
        parameters: 'body',
      },
      {
        method: 'GET',
        path: '/tickets/:id',
        action: 'tickets.read',
        resource: 'ticket:{id}',
        parameters: 'path',
      },
    ]),
  });
  app = Fastify();
  await app.register((scope, _opts, done) => {
    scope.register(grantEnforcement, { enforcer });
    scope.post<{ Params: { id: string } }>('/tickets/:id/read', (request, reply) => {
      ran.push(`fastify:${request.grantor?.grant.grantId ?? 'none'}`);
      const body = request.body as { fail?: boolean };
      if (body.fail === true) return reply.code(500).send({ broken: true });
      return { id: request.params.id, body: request.body };
    });
    done();
  });
  // Outside the enforced scope: not gated (the plugin's hooks reach its own scope only).
  app.get('/health', () => ({ ok: true }));
  await app.ready();

  plain = createServer(
    nodeEnforcement({ enforcer }, (_request, response, authorized) => {
      ran.push(`node:${authorized.grant.grantId}`);
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ resource: authorized.execution.resource }));
    }),
  );
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
}, 180_000);

afterAll(async () => {
  await app.close();
  plain.closeAllConnections();
  await new Promise((resolve) => plain.close(resolve));
  await appliance.close();
});

function popFor(grantId: string): string {
  return appliance.pop(grantId, enforcer.issueChallenge('127.0.0.1'));
}

describe('Fastify middleware', () => {
  const read = (grant: string, grantId: string, body: unknown, id = 'T-1') =>
    app.inject({
      method: 'POST',
      url: `/tickets/${id}/read`,
      headers: { authorization: `Grant ${grant}`, 'grant-pop': popFor(grantId) },
      payload: body as Record<string, unknown>,
    });

  it('runs the handler once for a good grant, refuses the replay, records the outcome', async () => {
    const body = { fields: ['subject'] };
    const { grantId, grant } = await appliance.issue('ticket:T-1', body);
    const first = await read(grant, grantId, body);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({ id: 'T-1', body });
    const replay = await read(grant, grantId, body);
    expect(replay.statusCode).toBe(409);
    expect(replay.json()).toMatchObject({ error: { code: 'grant_already_redeemed' } });
    expect(ran.filter((r) => r === `fastify:${grantId}`)).toHaveLength(1);
    await expect
      .poll(async () => appliance.lineage(grantId))
      .toMatchObject({ execution: { outcome: 'succeeded', gateway: appliance.rig.gateway.id } });
  });

  it('reports failed when the handler answers 5xx', async () => {
    const body = { fail: true };
    const { grantId, grant } = await appliance.issue('ticket:T-1', body);
    expect((await read(grant, grantId, body)).statusCode).toBe(500);
    await expect
      .poll(async () => appliance.lineage(grantId))
      .toMatchObject({ execution: { outcome: 'failed' } });
  });

  it('refuses before the handler: grant_missing, grant_parameters_mismatch, grant_resource_mismatch, request_body_invalid', async () => {
    const before = ran.length;
    const body = { fields: ['subject'] };
    const { grantId, grant } = await appliance.issue('ticket:T-1', body);
    const none = await app.inject({ method: 'POST', url: '/tickets/T-1/read', payload: body });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ error: { code: 'grant_missing' } });
    const other = await read(grant, grantId, { fields: ['status'] });
    expect(other.json()).toMatchObject({ error: { code: 'grant_parameters_mismatch' } });
    const elsewhere = await read(grant, grantId, body, 'T-2');
    expect(elsewhere.json()).toMatchObject({ error: { code: 'grant_resource_mismatch' } });
    const dup = await app.inject({
      method: 'POST',
      url: '/tickets/T-1/read',
      headers: {
        authorization: `Grant ${grant}`,
        'grant-pop': popFor(grantId),
        'content-type': 'application/json',
      },
      payload: '{"fields":["subject"],"fields":["x"]}',
    });
    expect(dup.statusCode).toBe(400);
    expect(dup.json()).toMatchObject({ error: { code: 'request_body_invalid' } });
    expect(ran.length).toBe(before);
    // Not redeemed by any of these: it still runs for what it names.
    expect((await read(grant, grantId, body)).statusCode).toBe(200);
    // Routes outside the plugin's scope are not gated.
    expect((await app.inject({ url: '/health' })).statusCode).toBe(200);
  });
});

describe('node http middleware', () => {
  it('runs the handler once for a good grant and refuses a missing one', async () => {
    const { grantId, grant } = await appliance.issue('ticket:T-9', { id: 'T-9' });
    const send = () =>
      fetch(`${plainUrl}/tickets/T-9`, {
        headers: { authorization: `Grant ${grant}`, 'grant-pop': popFor(grantId) },
      });
    const first = await send();
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ resource: 'ticket:T-9' });
    const again = await send();
    expect(again.status).toBe(409);
    const none = await fetch(`${plainUrl}/tickets/T-9`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: { code: 'grant_missing' } });
    expect(ran.filter((r) => r === `node:${grantId}`)).toHaveLength(1);
    await expect
      .poll(async () => appliance.lineage(grantId))
      .toMatchObject({ execution: { outcome: 'succeeded' } });
  });
});
