/**
 * Where the operator registry lives: one record per person. A credential (token or client
 * certificate) is issued to a person; dual control counts people, never credentials.
 */
import { Type, type Static } from 'typebox';
import { RoleSchema } from './token-store.port.js';

/** A normalised person id (see normalisePersonId): letters, digits and `._@+-`. */
export const PERSON_ID_PATTERN = '^[\\p{L}\\p{M}\\p{N}._@+-]{1,128}$';

export const PersonRecordSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 128 }),
    displayName: Type.String({ minLength: 1, maxLength: 128 }),
    /** The roles this person may act in (a credential names one of them). */
    roles: Type.Array(RoleSchema, { minItems: 1, maxItems: 3, uniqueItems: true }),
    /** Normalised e-mail addresses a client certificate may name (SAN rfc822Name). */
    emails: Type.Array(Type.String({ minLength: 3, maxLength: 120 }), { maxItems: 4 }),
    createdAt: Type.String(),
    updatedAt: Type.String(),
    /** Removed people keep their record (the audit log names them); every credential fails. */
    removedAt: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type PersonRecord = Static<typeof PersonRecordSchema>;

export interface PersonStore {
  get(id: string): Promise<PersonRecord | undefined>;
  put(record: PersonRecord): Promise<void>;
  list(): Promise<PersonRecord[]>;
}
