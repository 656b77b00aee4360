/**
 * Operator authentication and roles. One `onRequest` hook for every route registered after
 * the plugin (it is global on purpose: a route is protected by declaring `config.role` next
 * to its schema, wherever its plugin lives, so a new route folder cannot forget to install
 * the hook). It runs before the body is read, so an unauthenticated caller never gets a
 * body parsed.
 *
 * - `config.role` (a role or a list of roles): an operator credential with one of those
 *   roles is required: none or an invalid one -> 401 `unauthenticated`, another role ->
 *   403 `forbidden`. The operator is then `request.actor` (audit it).
 * - `config.actor: 'runtime'`: a runtime protocol route (the body carries its own proof).
 *   Any operator credential is refused with 403 `forbidden`: operators never ask for grants.
 * - `config.actor: 'gateway'`: a route of enrolled gateways (redeem, outcome, the revocation
 *   feed). Operator credentials are refused (403), and then a valid gateway token is required
 *   (401 `gateway_unauthenticated`; none configured: every call refused). This hook does it,
 *   not the route: a gateway route that forgets a hook of its own is still closed.
 * - neither: public (health, JWKS, metrics); credentials are ignored.
 *
 * Credentials: `Authorization: Bearer gop_...` (an operator token), or a TLS client
 * certificate that the listener verified (`socket.authorized`) and that
 * OperatorCertificateVerifier accepts (issued by the operator CA, role in the certificate).
 * A bearer header wins over a certificate; any other bearer (a grant, a runtime's proof) is
 * not an operator credential.
 *
 * Every refusal (no, an invalid or a non-operator credential, a wrong role, an operator
 * credential on a runtime route) is reported to `onRefused` with a reason code and the
 * identity presented, if any: a token's id (`tok_...`), never the token.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest, onRouteHookHandler } from 'fastify';
import type { OperatorCertificateVerifier } from '../../operators/client-cert.js';
import { ForbiddenError, UnauthenticatedError } from '../../operators/errors.js';
import { isRole, type OperatorActor, type Role } from '../../operators/roles.js';
import type { RefusedAttempt } from '../../operators/refusals.js';
import { looksLikeOperatorToken, type OperatorTokens } from '../../operators/tokens.js';
import { GrantorError } from '../../shared/errors.js';
import { authenticateGateway, type GatewayAuthenticator } from './gateway-auth.js';
import { namedGlobalPlugin } from './plugin.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The operator role(s) this route needs; absent: not an operator route. */
    role?: Role | readonly Role[];
    /**
     * `runtime`: a runtime protocol route; `gateway`: a route of enrolled gateways (their
     * own hook authenticates them, src/http/plugins/gateway-auth.ts). On both, operator
     * credentials are refused.
     */
    actor?: 'runtime' | 'gateway';
    /** Explicitly public (health, JWKS, verifier keys): see `requireDeclaration`. */
    public?: true;
  }
  interface FastifyRequest {
    /** The authenticated operator on a route with `config.role`; otherwise undefined. */
    actor: OperatorActor | undefined;
  }
}

export interface OperatorAuthOptions {
  readonly tokens: Pick<OperatorTokens, 'authenticate'>;
  /** Client certificates are accepted only when this is set (mutual TLS configured). */
  readonly certificates?: OperatorCertificateVerifier;
  /** Enrolled gateways (`config.actor: 'gateway'` routes); none: every gateway call is refused. */
  readonly gateways?: GatewayAuthenticator;
  /** Epoch milliseconds (the one clock shape, src/shared/clock.ts). */
  readonly now?: () => number;
  /**
   * Routes whose URL matches must declare `role`, `actor: 'runtime'` or `public: true`;
   * any other is refused at start-up instead of being public by omission. E.g. /^\/v1\//.
   */
  readonly requireDeclaration?: RegExp;
  /**
   * Called, and awaited, after authentication and validation and before the handler of
   * every operator route: the audit log's record of who did what. If it fails, the request
   * fails (the act is not performed unaudited).
   */
  readonly onOperatorAct?: (act: OperatorAct) => Promise<void>;
  /**
   * Called, and awaited, for every refused operator attempt before the refusal is answered;
   * its own failure is ignored (the request is refused either way). Bound what it writes:
   * see src/operators/refusals.ts.
   */
  readonly onRefused?: (refusal: OperatorRefusal) => Promise<void>;
}

/** Why an operator attempt was refused (audited as `operator.refused`). */
export type RefusalReason =
  /** No credential at all on an operator route. */
  | 'credential_missing'
  /** An operator token or certificate that is unknown, expired, revoked or malformed. */
  | 'credential_invalid'
  /** A bearer that is not an operator token (a grant, a runtime's proof). */
  | 'credential_not_operator'
  /** A client certificate the TLS layer refused (not from the operator CA, expired, ...). */
  | 'certificate_rejected'
  /** A valid operator credential whose role may not use the route. */
  | 'role_forbidden'
  /** An operator credential on a runtime route. */
  | 'operator_on_runtime_route';

/** A refused attempt as this hook reports it: the operators' RefusedAttempt, reason typed. */
export interface OperatorRefusal extends RefusedAttempt {
  readonly reason: RefusalReason;
}

/** One operator request about to be served. */
export interface OperatorAct {
  readonly actor: OperatorActor;
  readonly method: string;
  /** The route pattern, e.g. `/v1/keys/rotate`. */
  readonly route: string;
  /** The validated path parameters (ids), never the body. */
  readonly params: Readonly<Record<string, unknown>>;
  readonly time: string;
}

export const OPERATOR_AUTH_PLUGIN = 'grantor-operator-auth';

function rolesOf(role: Role | readonly Role[]): readonly Role[] {
  return typeof role === 'string' ? [role] : role;
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  // A malformed Authorization header is a failed credential, not a missing one.
  return m?.[1] ?? '';
}

/** The DER of a client certificate the TLS layer verified against the listener's CA. */
function verifiedPeerCertificate(request: FastifyRequest): Buffer | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') {
    return undefined;
  }
  const peer = socket.getPeerCertificate(false);
  // An empty object when the client sent none.
  return Buffer.isBuffer(peer.raw) && peer.raw.length > 0 ? peer.raw : undefined;
}

async function authenticate(
  request: FastifyRequest,
  opts: OperatorAuthOptions,
  now: () => Date,
): Promise<OperatorActor> {
  const token = bearer(request);
  if (token !== undefined) {
    if (!looksLikeOperatorToken(token)) {
      // A runtime's or gateway's bearer (a grant, a proof) never stands for an operator.
      throw new UnauthenticatedError('this route needs an operator credential');
    }
    return opts.tokens.authenticate(token);
  }
  const der = opts.certificates === undefined ? undefined : verifiedPeerCertificate(request);
  if (der !== undefined && opts.certificates !== undefined) {
    return opts.certificates.verify(der, now());
  }
  throw new UnauthenticatedError();
}

/** The id part of a token-shaped bearer (`gop_<16 hex id><secret>`): safe to record. */
function claimedIdentity(request: FastifyRequest): string | undefined {
  const token = bearer(request);
  if (token === undefined || !looksLikeOperatorToken(token)) return undefined;
  const id = /^gop_([0-9a-f]{16})/.exec(token)?.[1];
  return id === undefined ? undefined : `tok_${id}`;
}

/**
 * The TLS layer's reason for refusing a client certificate that was presented (Node keeps
 * the connection: requestCert without rejectUnauthorized), or undefined.
 */
function rejectedPeerCertificate(request: FastifyRequest): string | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (socket.authorized !== false || typeof socket.getPeerCertificate !== 'function') {
    return undefined;
  }
  const peer = socket.getPeerCertificate(false);
  if (!Buffer.isBuffer(peer.raw) || peer.raw.length === 0) return undefined;
  const reason = socket.authorizationError;
  const code = typeof reason === 'string' ? reason : reason?.message;
  // A fixed vocabulary (OpenSSL's X509 verify codes): never free text from the client.
  return code !== undefined && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'UNKNOWN';
}

/** The reason code of an authentication failure on an operator route. */
function unauthenticatedReason(request: FastifyRequest, opts: OperatorAuthOptions): RefusalReason {
  const token = bearer(request);
  if (token !== undefined) {
    // A malformed Authorization header ('' here) is a failed credential, not a runtime's.
    return token === '' || looksLikeOperatorToken(token)
      ? 'credential_invalid'
      : 'credential_not_operator';
  }
  if (opts.certificates !== undefined && verifiedPeerCertificate(request) !== undefined) {
    return 'credential_invalid';
  }
  return rejectedPeerCertificate(request) === undefined
    ? 'credential_missing'
    : 'certificate_rejected';
}

function presentsOperatorCredential(request: FastifyRequest, opts: OperatorAuthOptions): boolean {
  const token = bearer(request);
  if (token !== undefined && looksLikeOperatorToken(token)) return true;
  return opts.certificates !== undefined && verifiedPeerCertificate(request) !== undefined;
}

/** Refuse, at start-up, a route whose declaration is wrong rather than leave it open. */
const checkRouteDeclaration =
  (requireDeclaration: RegExp | undefined): onRouteHookHandler =>
  (route) => {
    const config = route.config ?? {};
    const declared =
      config.role !== undefined || config.actor !== undefined || config.public === true;
    if (requireDeclaration?.test(route.url) === true && !declared) {
      throw new TypeError(
        `route ${route.method.toString()} ${route.url}: declare config.role, config.actor or config.public`,
      );
    }
    if (config.role === undefined) return;
    const roles = rolesOf(config.role);
    if (roles.length === 0 || !roles.every(isRole)) {
      throw new TypeError(`route ${route.method.toString()} ${route.url}: unknown config.role`);
    }
    if (config.actor !== undefined || config.public === true) {
      throw new TypeError(
        `route ${route.method.toString()} ${route.url}: config.role excludes config.actor and config.public`,
      );
    }
  };

/** Handlers of operator routes: the authenticated operator (for the audit entry). */
export function requireActor(request: FastifyRequest): OperatorActor {
  if (request.actor === undefined) throw new UnauthenticatedError();
  return request.actor;
}

async function operatorAuthPlugin(app: FastifyInstance, opts: OperatorAuthOptions): Promise<void> {
  const clock = opts.now ?? Date.now;
  const now = (): Date => new Date(clock());
  app.decorateRequest('actor', undefined);
  app.decorateRequest('gateway', undefined);
  const gatewayOnly = authenticateGateway(opts.gateways);
  app.addHook('onRoute', checkRouteDeclaration(opts.requireDeclaration));
  const refused = async (
    request: FastifyRequest,
    error: GrantorError,
    reason: RefusalReason,
    identity: string | undefined,
    person?: string,
  ): Promise<never> => {
    const credentialed = person !== undefined;
    const detail = reason === 'certificate_rejected' ? rejectedPeerCertificate(request) : undefined;
    if (opts.onRefused !== undefined) {
      await opts
        .onRefused({
          method: request.method,
          route: request.routeOptions.url ?? request.url,
          reason,
          code: error.code,
          address: request.ip,
          ...(identity === undefined ? {} : { identity }),
          ...(credentialed ? { credentialed, person } : {}),
          ...(detail === undefined ? {} : { detail }),
          time: now().toISOString(),
        })
        .catch((e: unknown) => {
          request.log.error({ err: e }, 'could not record a refused operator attempt');
        });
    }
    throw error;
  };
  app.addHook('onRequest', async (request) => {
    const config = request.routeOptions.config;
    if (config.actor === 'runtime' || config.actor === 'gateway') {
      if (presentsOperatorCredential(request, opts)) {
        // A valid credential here is a real operator (or a stolen credential) trying the
        // runtime protocol: recorded by its id, on the budget junk cannot spend.
        const valid = await authenticate(request, opts, now).catch(() => undefined);
        await refused(
          request,
          new ForbiddenError('operator credentials cannot act as a runtime'),
          'operator_on_runtime_route',
          valid?.id ?? claimedIdentity(request) ?? 'certificate',
          valid?.person,
        );
      }
      // Enforced here, from the route's declaration, never by a hook each route must add.
      if (config.actor === 'gateway') await gatewayOnly(request);
      return;
    }
    if (config.role === undefined) return;
    let actor: OperatorActor;
    try {
      actor = await authenticate(request, opts, now);
    } catch (e) {
      if (!(e instanceof GrantorError) || (e.code !== 'unauthenticated' && e.code !== 'forbidden'))
        throw e;
      const reason =
        e.code === 'forbidden' ? 'credential_not_operator' : unauthenticatedReason(request, opts);
      return refused(request, e, reason, claimedIdentity(request));
    }
    const allowed = rolesOf(config.role);
    if (!allowed.includes(actor.role)) {
      await refused(
        request,
        new ForbiddenError(`this route needs role ${allowed.join(' or ')}`, {
          details: { required: [...allowed], role: actor.role },
        }),
        'role_forbidden',
        actor.id,
        actor.person,
      );
    }
    request.actor = actor;
  });
  const onAct = opts.onOperatorAct;
  if (onAct !== undefined) {
    app.addHook('preHandler', async (request) => {
      const actor = request.actor;
      if (actor === undefined || request.routeOptions.config.role === undefined) return;
      await onAct({
        actor,
        method: request.method,
        route: request.routeOptions.url ?? request.url,
        params: { ...(request.params as Record<string, unknown>) },
        time: now().toISOString(),
      });
    });
  }
  await Promise.resolve();
}

/** Register before the route plugins: `await app.register(operatorAuth, {tokens, certificates})`. */
export const operatorAuth = namedGlobalPlugin(OPERATOR_AUTH_PLUGIN, operatorAuthPlugin);
