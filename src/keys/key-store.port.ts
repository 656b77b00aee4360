/**
 * The key metadata store (the private keys themselves never leave the HSM). One record per
 * kid; the service keeps exactly one active key per purpose and writes every transition
 * that touches two records (rotation) in one atomic batch.
 */
import { Type, type Static } from 'typebox';

export const KeyPurposeSchema = Type.Union([Type.Literal('grant'), Type.Literal('audit')]);
export const KeyStateSchema = Type.Union([
  Type.Literal('active'),
  /**
   * A grant key published in the JWKS that does not sign yet: the next rotation makes it
   * active, so gateways that cached the set already hold it (issue 18).
   */
  Type.Literal('next'),
  Type.Literal('retiring'),
  Type.Literal('retired'),
]);
export const KeyAlgorithmSchema = Type.Union([Type.Literal('ES256'), Type.Literal('EdDSA')]);
export const PublicJwkSchema = Type.Union([
  Type.Object(
    { kty: Type.Literal('EC'), crv: Type.Literal('P-256'), x: Type.String(), y: Type.String() },
    { additionalProperties: false },
  ),
  Type.Object(
    { kty: Type.Literal('OKP'), crv: Type.Literal('Ed25519'), x: Type.String() },
    { additionalProperties: false },
  ),
]);

export const KeyRecordSchema = Type.Object(
  {
    /** RFC 7638 thumbprint of publicJwk. */
    kid: Type.String({ minLength: 1 }),
    purpose: KeyPurposeSchema,
    alg: KeyAlgorithmSchema,
    state: KeyStateSchema,
    /** PKCS#11 CKA_ID, hex. */
    hsmId: Type.String({ pattern: '^[0-9a-f]+$' }),
    /** PKCS#11 CKA_LABEL. */
    hsmLabel: Type.String(),
    publicJwk: PublicJwkSchema,
    /** RFC 3339 times of each transition. */
    createdAt: Type.String(),
    /** When a `next` key became active (the rotation period counts from here). */
    activatedAt: Type.Optional(Type.String()),
    retiringAt: Type.Optional(Type.String()),
    retiredAt: Type.Optional(Type.String()),
    destroyedAt: Type.Optional(Type.String()),
    /**
     * NumericDate bound on the `exp` of every grant this key signed (set when the key
     * stops signing): the key stays published until then.
     */
    maxExp: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

export type KeyPurpose = Static<typeof KeyPurposeSchema>;
export type KeyState = Static<typeof KeyStateSchema>;
export type KeyRecord = Static<typeof KeyRecordSchema>;

export interface KeyStore {
  /** Every record, in no particular order. */
  list(): Promise<KeyRecord[]>;
  get(kid: string): Promise<KeyRecord | undefined>;
  /** Write the records in one atomic batch. */
  putAll(records: readonly KeyRecord[]): Promise<void>;
}
