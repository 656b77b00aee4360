/**
 * The SDK as middleware: a Fastify plugin and a wrapper for a plain node `http` handler
 * (Express is not a dependency of this project; its `(req, res, next)` handlers are node
 * handlers, so `nodeEnforcement` serves them as well). Both go through the Enforcer: the
 * route table names the execution, the grant (and its proof) is verified and redeemed
 * before the handler runs, and the outcome is reported from the status the handler
 * answered (2xx succeeded, any other status failed, no answer aborted).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GrantorError, InternalError } from '../shared/errors.js';
import {
  outcomeOfStatus,
  refusalCode,
  refusalStatus,
  type Authorized,
  type Enforcer,
} from './enforce.js';
import { RequestTooLargeError } from './errors.js';
import type { RouteRequest } from './route-table.js';

export interface MiddlewareOptions {
  readonly enforcer: Enforcer;
  /** The client id for PoP challenges. Default: the peer address. */
  readonly clientOf?: (request: IncomingMessage) => string;
  /** Called with a failed outcome report (the action ran; the report did not arrive). */
  readonly onReportError?: (err: unknown, grantId: string) => void;
}

/** The refusal body every enforcement point answers: `{"error": {"code", "message"}}`. */
export function refusalBody(err: GrantorError): { error: { code: string; message: string } } {
  const status = refusalStatus(err);
  // 5xx reveals nothing internal: the code says which dependency.
  return {
    error: {
      code: refusalCode(err),
      message: status >= 500 ? 'the gateway cannot decide now' : err.message,
    },
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified and redeemed grant of this request (set by grantEnforcement). */
    grantor?: Authorized;
  }
}

const peer = (request: IncomingMessage): string => request.socket.remoteAddress ?? '';

function reportWhenDone(
  options: MiddlewareOptions,
  grantId: string,
  response: ServerResponse,
): void {
  let reported = false;
  const report = (outcome: 'succeeded' | 'failed' | 'aborted') => {
    if (reported) return;
    reported = true;
    void options.enforcer.report(grantId, outcome).then((err) => {
      if (err !== undefined) options.onReportError?.(err, grantId);
    });
  };
  response.once('finish', () => {
    report(outcomeOfStatus(response.statusCode));
  });
  response.once('close', () => {
    report(response.writableFinished ? outcomeOfStatus(response.statusCode) : 'aborted');
  });
}

/**
 * Fastify plugin: every route registered in the same scope (after it) is enforced by the
 * route table; a route the table does not name is refused `route_not_found`. JSON bodies
 * are parsed strictly (no duplicate members), so the digest is over what the handler sees.
 *
 *   await app.register(async (scope) => {
 *     await scope.register(grantEnforcement, { enforcer });
 *     scope.post('/payments/:acct/transfer', (request) => ...request.grantor...);
 *   });
 */
export function grantEnforcement(
  app: FastifyInstance,
  options: MiddlewareOptions,
  done: (err?: Error) => void,
): void {
  const clientOf = options.clientOf ?? peer;
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    // The raw bytes: the route table parses them strictly.
    done(null, body);
  });
  app.decorateRequest('grantor', undefined);
  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const body: RouteRequest['body'] = Buffer.isBuffer(request.body)
      ? { kind: 'bytes', bytes: request.body }
      : { kind: 'absent' };
    try {
      const authorized = await options.enforcer.authorize({
        method: request.method,
        target: request.url,
        headers: request.headers,
        body,
        client: clientOf(request.raw),
      });
      request.grantor = authorized;
      // The handler sees the JSON that was digested.
      if (body.kind === 'bytes' && authorized.execution.route.parameters.includes('body')) {
        const p = authorized.execution.parameters;
        request.body = authorized.execution.route.single ? p : (p as Record<string, unknown>).body;
      }
      reportWhenDone(options, authorized.grant.grantId, reply.raw);
    } catch (err) {
      if (!(err instanceof GrantorError)) throw err;
      return reply.code(refusalStatus(err)).send(refusalBody(err));
    }
    return undefined;
  });
  done();
}
// Like fastify-plugin: the hooks apply to the scope that registers the plugin.
Object.assign(grantEnforcement, { [Symbol.for('skip-override')]: true });

export type EnforcedHandler = (
  request: IncomingMessage,
  response: ServerResponse,
  authorized: Authorized,
) => void | Promise<void>;

/** Reads a body up to `maxBytes`; refuses more with RequestTooLargeError. */
export async function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? '0');
  if (declared > maxBytes) throw new RequestTooLargeError(`the body is over ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > maxBytes) throw new RequestTooLargeError(`the body is over ${maxBytes} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/**
 * A node `http` request handler that runs `handler` only for an authorised request, with
 * the body (at most `maxBodyBytes`, default 1 MiB) already read and digested.
 */
export function nodeEnforcement(
  options: MiddlewareOptions & { readonly maxBodyBytes?: number },
  handler: EnforcedHandler,
): (request: IncomingMessage, response: ServerResponse) => void {
  const clientOf = options.clientOf ?? peer;
  const refuse = (response: ServerResponse, err: GrantorError) => {
    response.writeHead(refusalStatus(err), { 'content-type': 'application/json' });
    response.end(JSON.stringify(refusalBody(err)));
  };
  return (request, response) => {
    void (async () => {
      let authorized: Authorized;
      try {
        const bytes = await readBody(request, options.maxBodyBytes ?? 1024 * 1024);
        authorized = await options.enforcer.authorize({
          method: request.method ?? '',
          target: request.url ?? '',
          headers: request.headers,
          body: bytes.length === 0 ? { kind: 'absent' } : { kind: 'bytes', bytes },
          client: clientOf(request),
        });
      } catch (err) {
        if (err instanceof GrantorError) refuse(response, err);
        else refuse(response, new InternalError());
        return;
      }
      reportWhenDone(options, authorized.grant.grantId, response);
      await handler(request, response, authorized);
    })().catch(() => {
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  };
}
