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

/** The `:runtimeId` of every route under /v1/runtimes/:runtimeId. */
export const RuntimeParams = Type.Object(
  { runtimeId: Type.String({ minLength: 4, maxLength: 64, pattern: '^rt_[A-Za-z0-9_-]+$' }) },
  { additionalProperties: false },
);

// The quote's shape is the attestation domain's (the grant domain checks requests against it).
export { Base64, PcrValues, QuoteEvidence } from '../attestation/index.js';
