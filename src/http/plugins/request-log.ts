/**
 * One log line per request, written when the answer has left (`onResponse`), refusals
 * included: request id, method, route pattern, status, error code, actor and latency.
 * Fastify's own pair of lines is switched off (`disableRequestLogging` in createServer).
 *
 * The request id is the caller's `X-Request-Id` when it is well formed (a proxy's or a
 * client's correlation id: caller-chosen, so neither secret nor unique, and only ever used
 * to find log lines), else `<random prefix>-<counter>`: the prefix is drawn once per
 * server, so ids do not repeat across restarts. It is echoed in the `X-Request-Id` answer
 * header of every answer, errors included.
 *
 * The actor is who the request was made as, never a credential: `operator:<person>` (with
 * the credential's id, `tok_...` or `cert:...`, never the token) once authenticated, or
 * `runtime:<id>` for the runtime a runtime-protocol request names (path, else body). A
 * runtime id is what the request claims: it is proven only where the route checks the
 * request's proof, i.e. on a 2xx answer.
 *
 * Health probes and scrapes (`/healthz`, `/readyz`, `/metrics`) log at debug, so a
 * scraper every few seconds does not drown the log; 5xx at warn, everything else at info.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export const REQUEST_ID_HEADER = 'x-request-id';

/** An incoming id is taken only in this shape: short, printable, no spaces or quotes. */
const WELL_FORMED_ID = /^[A-Za-z0-9._:+=/-]{1,128}$/;
const MAX_ACTOR_ID = 128;
const ACTOR_ID = /^[A-Za-z0-9._:@+-]{1,128}$/;
const ERROR_CODE = /^[a-z0-9_]{1,64}$/;
/** Probes and scrapes: a line each at debug only. */
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** `genReqId` for Fastify: the caller's well-formed X-Request-Id, else a fresh unique id. */
export function requestIdGenerator(
  prefix = randomBytes(6).toString('hex'),
): (req: Pick<IncomingMessage, 'headers'>) => string {
  let next = 0;
  return (req) => {
    const incoming = req.headers[REQUEST_ID_HEADER];
    if (typeof incoming === 'string' && WELL_FORMED_ID.test(incoming)) return incoming;
    next += 1;
    return `${prefix}-${next.toString(36)}`;
  };
}

/** `error.code` of a JSON error answer, when it has one of the contract's shape. */
export function errorCodeOfBody(payload: unknown): string | undefined {
  if (typeof payload !== 'string' || payload.length > 64 * 1024) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || !('error' in parsed)) return undefined;
  const error = parsed.error;
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' && ERROR_CODE.test(error.code) ? error.code : undefined;
}

function runtimeNamed(request: FastifyRequest): string | undefined {
  const params = request.params as Record<string, unknown> | undefined;
  const body = request.body as Record<string, unknown> | null | undefined;
  const id =
    params?.runtimeId ?? (typeof body === 'object' && body !== null ? body.runtimeId : undefined);
  return typeof id === 'string' && id.length <= MAX_ACTOR_ID && ACTOR_ID.test(id) ? id : undefined;
}

function actorFields(request: FastifyRequest): Record<string, string> {
  const operator = request.actor;
  if (operator !== undefined) {
    return { actor: `operator:${operator.person}`, credential: operator.id };
  }
  if (request.routeOptions.config.actor === 'runtime') {
    const runtime = runtimeNamed(request);
    if (runtime !== undefined) return { actor: `runtime:${runtime}` };
  }
  return {};
}

/**
 * Installs the request id header and the per-request line on `app` (every route, the 404
 * handler and the answers of hooks that refuse before a route runs).
 */
export function installRequestLog(app: FastifyInstance): void {
  const codes = new WeakMap<FastifyRequest, string>();
  app.addHook('onRequest', (request, reply, done) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
  app.addHook('onSend', (request, reply: FastifyReply, payload, done) => {
    if (reply.statusCode >= 400) {
      const code = errorCodeOfBody(payload);
      if (code !== undefined) codes.set(request, code);
    }
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url;
    const status = reply.statusCode;
    const code = codes.get(request);
    const line = {
      method: request.method,
      route: route ?? 'unmatched',
      ...(route === undefined ? { path: (request.url.split('?')[0] ?? '').slice(0, 256) } : {}),
      status,
      ...(code === undefined ? {} : { code }),
      ...actorFields(request),
      ms: Math.round(reply.elapsedTime * 10) / 10,
    };
    if (route !== undefined && QUIET_ROUTES.has(route)) request.log.debug(line, 'request');
    else if (status >= 500) request.log.warn(line, 'request');
    else request.log.info(line, 'request');
    done();
  });
}
