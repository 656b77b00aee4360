import { Type } from 'typebox';

/** Every non-2xx answer (PROTOCOL.md "Errors"). */
export const ErrorSchema = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String(),
        message: Type.String(),
        details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/**
 * The error part of a route's `response`: the contract's error shape under each status the
 * route names (spread beside its 2xx schemas). The OpenAPI plugin adds the statuses every
 * route of its kind can answer (src/http/plugins/openapi.ts `impliedStatuses`).
 */
export function errorResponses<const S extends number>(
  ...statuses: readonly S[]
): Record<S, typeof ErrorSchema> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorSchema])) as Record<
    S,
    typeof ErrorSchema
  >;
}

/** The `:runtimeId` of every route under /v1/runtimes/:runtimeId. */
export const RuntimeParams = Type.Object(
  { runtimeId: Type.String({ minLength: 4, maxLength: 64, pattern: '^rt_[A-Za-z0-9_-]+$' }) },
  { additionalProperties: false },
);

// The quote's shape is the attestation domain's (the grant domain checks requests against it).
export { Base64, PcrValues, QuoteEvidence } from '../attestation/index.js';
