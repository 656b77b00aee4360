/**
 * Where enrolled gateways are kept: the audiences each may redeem for and the SHA-256 of
 * its token's secret, never the token. One record per gateway id.
 */
import { Type, type Static } from 'typebox';

/** At most this many audiences per gateway (the audit entry lists them all). */
export const MAX_GATEWAY_AUDIENCES = 16;

export const GatewayRecordSchema = Type.Object(
  {
    id: Type.String({ pattern: '^gw_[0-9a-f]{16}$' }),
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
    audiences: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
      minItems: 1,
      maxItems: MAX_GATEWAY_AUDIENCES,
    }),
    /** Hex SHA-256 of the 32 secret bytes. */
    secretHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    createdAt: Type.String(),
    /** The operator who enrolled it (`<person>:<credential id>`, or `cli`). */
    createdBy: Type.String({ minLength: 1, maxLength: 256 }),
    expiresAt: Type.String(),
    revokedAt: Type.Optional(Type.String()),
    revokedBy: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  },
  { additionalProperties: false },
);

export type GatewayRecord = Static<typeof GatewayRecordSchema>;

export interface GatewayStore {
  get(id: string): Promise<GatewayRecord | undefined>;
  put(record: GatewayRecord): Promise<void>;
  list(): Promise<GatewayRecord[]>;
}
