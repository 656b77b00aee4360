/**
 * Gateway authentication for the routes a gateway calls (redeem, outcome, the revocation
 * feed): the operator auth plugin (auth.ts) runs it in its global `onRequest` hook on every
 * route that declares `config.actor: 'gateway'`, before the body is read. `Authorization: Bearer ggw_...` must name an enrolled, unrevoked, unexpired gateway
 * (src/operators/gateways.ts); anything else is 401 `gateway_unauthenticated`. Without a
 * registry every gateway call is refused (fail closed). Operator credentials never reach
 * here: the operator auth plugin refuses them on `config.actor` routes (403).
 */
import type { FastifyRequest } from 'fastify';
import { GatewayUnauthenticatedError } from '../../operators/errors.js';
import type { GatewayIdentity } from '../../operators/gateways.js';

export interface GatewayAuthenticator {
  authenticate(token: string): Promise<GatewayIdentity>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated gateway on a gateway route; otherwise undefined. */
    gateway: GatewayIdentity | undefined;
  }
}

/** The hook: sets `request.gateway` or refuses the request. */
export function authenticateGateway(
  gateways: GatewayAuthenticator | undefined,
): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const header = request.headers.authorization;
    const token = header === undefined ? undefined : /^Bearer +(\S+) *$/i.exec(header)?.[1];
    if (token === undefined || gateways === undefined) throw new GatewayUnauthenticatedError();
    request.gateway = await gateways.authenticate(token);
  };
}

/** Handlers of gateway routes: the authenticated gateway. */
export function requireGateway(request: FastifyRequest): GatewayIdentity {
  if (request.gateway === undefined) throw new GatewayUnauthenticatedError();
  return request.gateway;
}
