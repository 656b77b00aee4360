/**
 * The real appliance for the enforcement tests (test/grants/rig.ts: swtpm, SoftHSM2, Cedar
 * over policies/default, the anchored audit log) listening on 127.0.0.1, one support
 * runtime attested with a session key, a test upstream that counts what it executes, and
 * helpers that issue real grants and make their proofs of possession.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parametersDigest } from '../../src/gateway/index.js';
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
