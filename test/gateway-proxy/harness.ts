/**
 * The real appliance for the enforcement tests (test/grants/rig.ts: swtpm, SoftHSM2, Cedar
 * over policies/default, the anchored audit log) listening on 127.0.0.1, one support
 * runtime attested with a session key, a test upstream that counts what it executes, and
 * helpers that issue real grants and make their proofs of possession; and `grantor-gateway`
 * over both (`startEnforcedGateway`), as the proxy and the nginx tests use it.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterEach, beforeAll, expect } from 'vitest';
import type { AddressInfo } from 'node:net';
import { parametersDigest } from '../../src/gateway/index.js';
import { TICKET_READ_ROUTE } from '../../src/gateway/testing/routes.js';
import {
  createGateway,
  parseGatewayConfig,
  type GatewayProxy,
  type GatewayWiring,
} from '../../src/gateway-proxy/index.js';
import {
  ISSUER,
  attest,
  enrollWithEccAk,
  grantBody,
  popHeader,
  signed,
  startRig,
  type Rig,
  type Runtime,
  type SessionKeyPair,
} from '../grants/rig.js';

export { ISSUER };

/**
 * In the enclosing describe: the upstream (read when the describe starts) executes nothing
 * during any of its tests but what a test declares with `allow()`.
 */
export function expectNothingExecuted(upstream: () => Upstream): { allow(): void } {
  let before = 0;
  beforeAll(() => {
    before = upstream().executed.length;
  });
  afterEach(() => {
    expect(upstream().executed.length).toBe(before);
  });
  return {
    allow: () => {
      before += 1;
    },
  };
}
export const AUDIENCE = 'gw_tickets';

export interface Executed {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** An upstream that records every request it executes; `/fail/...` answers 500. */
export interface Upstream {
  readonly url: string;
  readonly executed: Executed[];
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const executed: Executed[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      executed.push({
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body,
      });
      const status = (request.url ?? '').startsWith('/failing') ? 500 : 200;
      response.writeHead(status, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      response.end(JSON.stringify({ executed: executed.length, url: request.url }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    executed,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

export interface Appliance {
  readonly rig: Rig;
  readonly url: string;
  readonly runtime: Runtime;
  readonly session: { attestationId: string; key: SessionKeyPair };
  /** A real grant for this execution (tickets.read by the support runtime). */
  issue(resource: string, parameters: unknown, over?: Record<string, unknown>): Promise<Issued>;
  /** The `Grant-PoP` header for a grant and a challenge, by the session key. */
  pop(grantId: string, challenge: string, audience?: string): string;
  /** Revokes a grant as an operator would. */
  revoke(grantId: string): Promise<void>;
  /** The grant's lineage view (state, redeemedBy, execution). */
  lineage(grantId: string): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface Issued {
  readonly grantId: string;
  readonly grant: string;
}

export async function startAppliance(): Promise<Appliance> {
  const rig = await startRig();
  const runtime = await enrollWithEccAk(rig, 'support-proxy', { team: 'support' });
  const session = await attest(rig, runtime);
  await rig.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = rig.app.server.address() as AddressInfo;
  return {
    rig,
    url: `http://127.0.0.1:${port}/`,
    runtime,
    session,
    issue: async (resource, parameters, over = {}) => {
      const res = await rig.app.inject({
        method: 'POST',
        url: '/v1/grants',
        payload: signed(
          grantBody(runtime, {
            action: 'tickets.read',
            resource,
            parametersDigest: parametersDigest(parameters),
            audience: AUDIENCE,
            ...over,
          }),
          session.attestationId,
          session.key.privateKey,
        ),
      });
      if (res.statusCode !== 201) throw new Error(`grant: ${res.statusCode} ${res.body}`);
      return res.json<Issued>();
    },
    pop: (grantId, challenge, audience = AUDIENCE) =>
      popHeader(session.key, { audience, grantId, challenge }),
    revoke: async (grantId) => {
      const res = await rig.app.inject({ method: 'POST', url: `/v1/grants/${grantId}/revoke` });
      if (res.statusCode !== 200) throw new Error(`revoke: ${res.statusCode} ${res.body}`);
    },
    lineage: async (grantId) => {
      const res = await rig.app.inject({ url: `/v1/grants/${grantId}/lineage` });
      return res.json<{ grant: Record<string, unknown> }>().grant;
    },
    close: () => rig.close(),
  };
}

/** The route table of the enforcement tests. */
export const ROUTES = [
  TICKET_READ_ROUTE,
  {
    method: 'POST',
    path: '/tickets/:id/read',
    action: 'tickets.read',
    resource: 'ticket:{id}',
    parameters: 'body',
  },
  {
    method: 'POST',
    path: '/failing/:id',
    action: 'tickets.read',
    resource: 'ticket:{id}',
    parameters: 'none',
  },
];

/** The real appliance, a counting upstream and `grantor-gateway` over them, listening. */
export interface EnforcedGateway {
  readonly appliance: Appliance;
  readonly upstream: Upstream;
  readonly gateway: GatewayProxy;
  /** Where the gateway listens. */
  readonly url: URL;
  /** Moves the gateway's clock (a test resets it). */
  readonly clock: { offsetMs: number };
  /** The grant and a proof over a fresh challenge from `via` (default: the gateway). */
  presented(grantId: string, grant: string, via?: string): Promise<Record<string, string>>;
  close(): Promise<void>;
}

/**
 * Starts the three with the ROUTES table; `config` adds to the gateway's configuration
 * (its `upstream`, `authRequestPath`, limits) and may use the upstream's URL.
 */
export async function startEnforcedGateway(
  config: (upstream: Upstream) => Record<string, unknown>,
  wiring: Pick<GatewayWiring, 'log'> = {},
): Promise<EnforcedGateway> {
  const appliance = await startAppliance();
  const upstream = await startUpstream();
  const clock = { offsetMs: 0 };
  const gateway = createGateway(
    parseGatewayConfig({
      listen: { host: '127.0.0.1', port: 0 },
      appliance: { url: appliance.url, issuer: ISSUER, audience: AUDIENCE },
      routes: ROUTES,
      ...config(upstream),
    }),
    {
      gatewayToken: appliance.rig.gateway.token,
      now: () => Date.now() + clock.offsetMs,
      ...wiring,
    },
  );
  const url = await gateway.listen();
  return {
    appliance,
    upstream,
    gateway,
    url,
    clock,
    presented: async (grantId, grant, via = url.toString()) => {
      const res = await fetch(new URL('grantor/pop/challenge', via), { method: 'POST' });
      if (res.status !== 200) throw new Error(`challenge: ${res.status}`);
      const { challenge } = (await res.json()) as { challenge: string };
      return { authorization: `Grant ${grant}`, 'grant-pop': appliance.pop(grantId, challenge) };
    },
    close: async () => {
      await gateway.close();
      await upstream.close();
      await appliance.close();
    },
  };
}
