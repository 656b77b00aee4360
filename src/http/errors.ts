/**
 * One error handler: typed GrantorErrors become `{error: {code, message, details?}}` with the
 * status from the table; Fastify's own errors (validation, body size, content type) map to
 * contract codes; anything else is a 500 that reveals nothing.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { GrantorError, type ErrorCode } from '../shared/errors.js';
import { publicMessage, statusForCode } from './error-status.js';

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export function errorBody(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

function fastifyCode(err: FastifyError): { code: ErrorCode; status: number } | undefined {
  if (err.validation !== undefined) return { code: 'bad_request', status: 400 };
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'payload_too_large', status: 413 };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { code: 'unsupported_media_type', status: 415 };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { code: 'bad_request', status: 400 };
    default:
      break;
  }
  // Body parser errors (e.g. malformed JSON, __proto__ payloads) carry a 4xx statusCode.
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return {
      code: err.statusCode === 429 ? 'rate_limited' : 'bad_request',
      status: err.statusCode,
    };
  }
  return undefined;
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | GrantorError | Error, request, reply) => {
    if (err instanceof GrantorError) {
      const status = statusForCode(err.code);
      if (status >= 500) request.log.warn({ code: err.code, err }, 'request failed closed');
      const details = status < 500 && err.details !== undefined ? { ...err.details } : undefined;
      return reply
        .code(status)
        .send(errorBody(err.code, publicMessage(err.code, status, err.message), details));
    }
    const mapped = fastifyCode(err as FastifyError);
    if (mapped !== undefined) {
      return reply.code(mapped.status).send(errorBody(mapped.code, err.message));
    }
    request.log.error({ err }, 'unexpected error');
    return reply.code(500).send(errorBody('internal_error', 'internal error'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send(
        errorBody('not_found', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`),
      ),
  );
}
