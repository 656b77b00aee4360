/**
 * Where operator bearer tokens are kept: only the SHA-256 of each token's secret, never
 * the token. One record per token id.
 */
import { Type, type Static } from 'typebox';

export const RoleSchema = Type.Union([
  Type.Literal('auditor'),
  Type.Literal('operator'),
  Type.Literal('key_custodian'),
]);

export const TokenRecordSchema = Type.Object(
  {
    id: Type.String({ pattern: '^tok_[0-9a-f]{16}$' }),
    role: RoleSchema,
    actor: Type.String({ minLength: 1, maxLength: 128 }),
    /** The person it was issued to (normalised registry id); older records: `actor`. */
    person: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    /** Hex SHA-256 of the 32 secret bytes. */
    secretHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    createdAt: Type.String(),
    expiresAt: Type.String(),
    revokedAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export type TokenRecord = Static<typeof TokenRecordSchema>;

export interface TokenStore {
  get(id: string): Promise<TokenRecord | undefined>;
  put(record: TokenRecord): Promise<void>;
  list(): Promise<TokenRecord[]>;
}
