/**
 * `grantor-gateway`: a reverse proxy that forwards a request to its upstream only with a
 * valid, unrevoked grant, redeemed here, whose action, resource and parameters digest name
 * that request (the SDK's Enforcer over the route table), and reports the outcome from the
 * upstream's answer. It also answers nginx `auth_request` subrequests (the same checks on
 * the original method, URI and headers nginx passes) and hands out proof-of-possession
 * challenges. It imports only the gateway SDK.
 *
 * Outcome from the upstream (docs/gateway.md): a 2xx answer is `succeeded`, any other answer
 * `failed`, no answer (connection refused or reset, timeout) `aborted`.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import {
  GrantorError,
  InternalError,
  RouteNotFoundError,
  UpstreamUnavailableError,
  outcomeOfStatus,
  readBody,
  refusalBody,
  refusalCode,
  refusalStatus,
  type Authorized,
  type Enforcer,
} from '../gateway/index.js';
import type { GatewayProxyConfig } from './config.js';
import type { GatewayMetrics } from './metrics.js';

export interface GatewayProxyEvent {
  readonly event:
    | 'forwarded'
    | 'refused'
    | 'authorised'
    | 'report_failed'
    | 'upstream_failed'
    | 'revocation_feed_failed';
  readonly method?: string;
  readonly path?: string;
  readonly grantId?: string;
  readonly code?: string;
  readonly status?: number;
  readonly outcome?: string;
}

export interface GatewayProxyDeps {
  readonly enforcer: Enforcer;
  /** One line per decision; never given a grant, a proof or a token. */
  readonly log?: (event: GatewayProxyEvent) => void;
  /** Counts what was authorised and refused; served at `metricsPath`. */
  readonly metrics?: GatewayMetrics;
}

export interface GatewayProxy {
  readonly server: Server;
  /** Listens on the configured address; resolves with the URL it listens on. */
  listen(): Promise<URL>;
  close(): Promise<void>;
}

/** The header nginx reads the refusal code from (auth_request answers and proxy refusals). */
export const REFUSAL_HEADER = 'grantor-refusal';

// RFC 9110 §7.6.1 hop-by-hop headers, never forwarded either way.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function hopHeaders(headers: IncomingHttpHeaders): Set<string> {
  const named = new Set(HOP_BY_HOP);
  const connection = headers.connection;
  if (typeof connection === 'string') {
    for (const n of connection.split(',')) named.add(n.trim().toLowerCase());
  }
  return named;
}

function pathOf(target: string): string {
  const at = target.indexOf('?');
  return at < 0 ? target : target.slice(0, at);
}

export function createGatewayProxy(
  config: GatewayProxyConfig,
  deps: GatewayProxyDeps,
): GatewayProxy {
  const { enforcer } = deps;
  const log = deps.log ?? (() => undefined);
  /** A decision on a request: its method and path (never its query) with what was decided. */
  const logRequest = (
    request: IncomingMessage,
    event: GatewayProxyEvent['event'],
    fields: Omit<GatewayProxyEvent, 'event' | 'method' | 'path'>,
  ) => {
    log({ event, method: request.method ?? '', path: pathOf(request.url ?? ''), ...fields });
  };
  const consumed = new Set(enforcer.consumedHeaders);
  const limits = config.limits;

  const clientOf = (request: IncomingMessage): string => {
    if (config.clientAddressHeader === undefined) return request.socket.remoteAddress ?? '';
    const v = request.headers[config.clientAddressHeader];
    return typeof v === 'string' ? v : '';
  };

  const refuse = (
    request: IncomingMessage,
    response: ServerResponse,
    err: GrantorError,
    status = refusalStatus(err),
  ) => {
    const code = refusalCode(err);
    deps.metrics?.refused(code);
    logRequest(request, 'refused', { code, status });
    if (response.headersSent) {
      response.destroy();
      return;
    }
    response.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      [REFUSAL_HEADER]: code,
    });
    response.end(JSON.stringify(refusalBody(err)));
  };

  const report = (grantId: string, outcome: 'succeeded' | 'failed' | 'aborted') => {
    void enforcer.report(grantId, outcome).then((err) => {
      if (err !== undefined) {
        log({
          event: 'report_failed',
          grantId,
          outcome,
          code: err instanceof GrantorError ? err.code : 'internal_error',
        });
      }
    });
  };

  /** `POST <popChallengePath>`: a challenge for this client (PopChallenges bounds them). */
  const challenge = (request: IncomingMessage, response: ServerResponse) => {
    request.resume();
    const chal = enforcer.issueChallenge(clientOf(request));
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify({ challenge: chal }));
  };

  /**
   * nginx `auth_request`: the subrequest carries the original request's headers and, set by
   * the nginx configuration, `X-Original-Method`, `X-Original-URI` ($request_uri),
   * `X-Original-Content-Length` and `X-Original-Transfer-Encoding`. The body is not
   * available: a route whose digest needs it is refused `route_body_unavailable`, and a
   * route that takes no body refuses a request that has one. nginx passes only 401 and 403
   * on, so every refusal of the request is 403 (401 for no grant), with its code in
   * `Grantor-Refusal`; a dependency that is down answers 503 (nginx: 500).
   */
  const authRequest = async (request: IncomingMessage, response: ServerResponse) => {
    request.resume();
    const h = request.headers;
    const method = h['x-original-method'];
    const target = h['x-original-uri'];
    if (typeof method !== 'string' || typeof target !== 'string') {
      response.writeHead(500, { [REFUSAL_HEADER]: 'auth_request_misconfigured' });
      response.end();
      return;
    }
    const length = h['x-original-content-length'];
    const te = h['x-original-transfer-encoding'];
    const present =
      (typeof length === 'string' && length !== '' && length !== '0') ||
      (typeof te === 'string' && te !== '');
    let authorized: Authorized;
    try {
      authorized = await enforcer.authorize({
        method,
        target,
        headers: h,
        body: { kind: 'unknown', present },
        client: clientOf(request),
      });
    } catch (err) {
      const e = err instanceof GrantorError ? err : new InternalError('internal');
      const status = refusalStatus(e);
      refuse(request, response, e, status === 401 || status >= 500 ? status : 403);
      return;
    }
    const { grant } = authorized;
    deps.metrics?.authorised();
    log({ event: 'authorised', method, path: pathOf(target), grantId: grant.grantId });
    response.writeHead(200, {
      'grantor-grant-id': grant.grantId,
      'grantor-runtime-id': grant.runtimeId,
      'cache-control': 'no-store',
    });
    response.end();
  };

  /** Proxy mode: read the body (bounded), authorise, forward, stream the answer back. */
  const forward = async (request: IncomingMessage, response: ServerResponse, upstream: URL) => {
    let body: Buffer;
    let authorized: Authorized;
    try {
      body = await readBody(request, limits.maxBodyBytes);
      authorized = await enforcer.authorize({
        method: request.method ?? '',
        target: request.url ?? '',
        headers: request.headers,
        body: body.length === 0 ? { kind: 'absent' } : { kind: 'bytes', bytes: body },
        client: clientOf(request),
      });
    } catch (err) {
      if (err instanceof GrantorError) refuse(request, response, err);
      else refuse(request, response, new InternalError(), 500);
      return;
    }
    const grantId = authorized.grant.grantId;
    deps.metrics?.authorised();
    if (request.socket.destroyed) {
      // The client left before anything ran: redeemed, never executed.
      report(grantId, 'aborted');
      return;
    }
    const skip = hopHeaders(request.headers);
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(request.headers)) {
      // The grant and proof are consumed here; grantor-* headers are ours to set.
      if (value === undefined || skip.has(name) || consumed.has(name)) continue;
      if (name.startsWith('grantor-') || name === 'host' || name === 'content-length') continue;
      headers[name] = value;
    }
    headers.host = upstream.host;
    headers['content-length'] = String(body.length);
    headers['grantor-grant-id'] = grantId;
    headers['grantor-runtime-id'] = authorized.grant.runtimeId;
    const base = upstream.pathname.endsWith('/')
      ? upstream.pathname.slice(0, -1)
      : upstream.pathname;
    const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
    let outcome: 'succeeded' | 'failed' | 'aborted' | undefined;
    const upstreamRequest = send(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: request.method,
        path: `${base}${request.url ?? ''}`,
        headers,
        timeout: limits.upstreamTimeoutMs,
      },
      (upstreamResponse) => {
        const status = upstreamResponse.statusCode ?? 502;
        outcome = outcomeOfStatus(status);
        report(grantId, outcome);
        logRequest(request, 'forwarded', { grantId, status, outcome });
        const drop = hopHeaders(upstreamResponse.headers);
        const back: OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(upstreamResponse.headers)) {
          if (value !== undefined && !drop.has(name)) back[name] = value;
        }
        response.writeHead(status, back);
        pipeline(upstreamResponse, response, () => undefined);
      },
    );
    upstreamRequest.on('timeout', () => {
      upstreamRequest.destroy(new UpstreamUnavailableError('the upstream timed out'));
    });
    upstreamRequest.on('error', (cause) => {
      if (outcome !== undefined) return;
      outcome = 'aborted';
      report(grantId, outcome);
      log({ event: 'upstream_failed', grantId, outcome });
      refuse(
        request,
        response,
        new UpstreamUnavailableError('the upstream did not answer', { cause }),
        502,
      );
    });
    upstreamRequest.end(body);
  };

  /** `GET <metricsPath>`: the Prometheus text exposition. */
  const metrics = async (response: ServerResponse, source: GatewayMetrics) => {
    const { contentType, text } = await source.exposition();
    response.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
    response.end(text);
  };

  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      requestTimeout: limits.clientTimeoutMs,
      headersTimeout: Math.min(limits.clientTimeoutMs, 60_000),
    },
    (request, response) => {
      const path = pathOf(request.url ?? '');
      const work = async () => {
        if (path === config.popChallengePath && request.method === 'POST') {
          challenge(request, response);
        } else if (
          deps.metrics !== undefined &&
          path === config.metricsPath &&
          request.method === 'GET'
        ) {
          request.resume();
          await metrics(response, deps.metrics);
        } else if (config.authRequestPath !== undefined && path === config.authRequestPath) {
          await authRequest(request, response);
        } else if (config.upstream !== undefined) {
          await forward(request, response, config.upstream);
        } else {
          request.resume();
          refuse(request, response, new RouteNotFoundError('no such endpoint'), 404);
        }
      };
      work().catch((err: unknown) => {
        const e = err instanceof GrantorError ? err : new InternalError('internal');
        refuse(request, response, e, err instanceof GrantorError ? refusalStatus(e) : 500);
      });
    },
  );
  // No protocol switches through the gateway: nothing it has not authorised goes through.
  server.on('upgrade', (_request: IncomingMessage, socket: { destroy(): void }) => {
    socket.destroy();
  });

  return {
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.listen.port, config.listen.host, () => {
          const { address, port } = server.address() as AddressInfo;
          const host = address.includes(':') ? `[${address}]` : address;
          resolve(new URL(`http://${host}:${port}/`));
        });
      }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
