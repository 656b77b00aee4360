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

const BASE64 = '^[A-Za-z0-9+/]*={0,2}$';

/** Standard base64 of 1..maxLength characters. */
export const Base64 = (maxLength: number) =>
  Type.String({ minLength: 1, maxLength, pattern: BASE64 });

/** PCR values by bank and index, as a runtime reports them with a quote. */
export const PcrValues = Type.Record(
  Type.String({ maxLength: 16 }),
  Type.Record(Type.String({ maxLength: 2 }), Type.String({ maxLength: 128 }), {
    maxProperties: 32,
  }),
  { maxProperties: 8 },
);

/**
 * A quote and what it covers, one shape wherever a runtime sends one: an attestation
 * (PROTOCOL.md §2) and a grant request in quote mode (§3). Measured boot
 * (docs/measured-boot.md): the logs' sizes are the attestation service's limits.
 */
export const QuoteEvidence = {
  nonce: Base64(64),
  quote: Base64(4096),
  signature: Base64(2048),
  pcrs: PcrValues,
  eventLog: Type.Optional(Type.String({ minLength: 1, pattern: BASE64 })),
  ima: Type.Optional(
    Type.Object(
      {
        offset: Type.Integer({ minimum: 0 }),
        format: Type.Union([Type.Literal('binary'), Type.Literal('ascii')]),
        log: Type.String({ pattern: BASE64 }),
      },
      { additionalProperties: false },
    ),
  ),
};
