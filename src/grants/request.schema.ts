/**
 * The grant request body (PROTOCOL.md §3) as one TypeBox schema: the only copy of each of
 * its limits. The route declares it (src/http/routes/grants.ts) and the domain checks every
 * request against it (request.ts), the quote included, so a direct caller of the service
 * meets the same limits as an HTTP one. What a schema cannot say (ttlSeconds against the
 * configured bound, exactly one proof, issuedAt as a time) request.ts checks after it.
 */
import { Type, type Static } from 'typebox';
import { QuoteEvidenceSchema } from '../attestation/index.js';

const closed = { additionalProperties: false } as const;

/** An id of the appliance's own: `<prefix>_` then base64url characters, 4..64 in all. */
export const Id = (prefix: string) =>
  Type.String({ minLength: 4, maxLength: 64, pattern: `^${prefix}_[A-Za-z0-9_-]+$` });

/** RFC 3339 with a `T` and a zone, as Date.parse reads it. */
const RFC3339 =
  '^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,9})?(?:[Zz]|[+-]\\d{2}:\\d{2})$';

export const SessionProofSchema = Type.Object(
  {
    attestationId: Id('at'),
    /** base64url of the ES256 r‖s signature (64 bytes). */
    signature: Type.String({ pattern: '^[A-Za-z0-9_-]{86}$' }),
  },
  closed,
);

export const GrantRequestSchema = Type.Object(
  {
    runtimeId: Id('rt'),
    requestId: Type.String({ minLength: 1, maxLength: 128 }),
    issuedAt: Type.String({ maxLength: 40, format: 'date-time', pattern: RFC3339 }),
    action: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' }),
    resource: Type.String({ minLength: 1, maxLength: 512 }),
    parametersDigest: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    audience: Type.String({ minLength: 1, maxLength: 128 }),
    parentGrantId: Type.Optional(Type.Union([Id('gr'), Type.Null()])),
    ttlSeconds: Type.Integer({ minimum: 1 }),
    session: Type.Optional(SessionProofSchema),
    quote: Type.Optional(QuoteEvidenceSchema),
  },
  closed,
);

/** A body that passed `GrantRequestSchema`. */
export type GrantRequestWire = Static<typeof GrantRequestSchema>;
