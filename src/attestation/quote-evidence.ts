/**
 * The wire shape of a quote and what it covers, one schema wherever a runtime sends one: an
 * attestation (PROTOCOL.md §2) and a grant request in quote mode (§3). The HTTP routes
 * declare it and the grant domain checks a request against it, so each limit has one copy.
 * Measured boot (docs/measured-boot.md): the logs' sizes are the attestation service's
 * limits, checked where they are parsed.
 */
import { Type, type Static } from 'typebox';

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

/** The members of a quote (spread into a body that carries more, as an attestation does). */
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

/** A quote on its own (a grant request's `quote` member), closed. */
export const QuoteEvidenceSchema = Type.Object(QuoteEvidence, { additionalProperties: false });

/** A quote that passed `QuoteEvidenceSchema`. */
export type QuoteEvidenceBody = Static<typeof QuoteEvidenceSchema>;
