/**
 * The client-certificate denylist: certificates revoked by their issuer and serial, kept
 * on the appliance database (sublevel `operator-cert-revocations`) and read on every
 * request, so a revocation takes effect on the next request, without a restart. The key
 * is the certificate's credential id, `cert:<issuer hash>:<serial>` (see certificateId):
 * the same serial from another issuer is another certificate.
 */
import { Check } from 'typebox/value';
import { Type, type Static } from 'typebox';
import type { Database } from '../shared/db.level.js';
import { OperatorStoreCorruptError } from './errors.js';

export const CERTIFICATE_ID_PATTERN = '^cert:[0-9a-f]{16}:[0-9a-f]{1,40}$';

export const CertificateRevocationSchema = Type.Object(
  {
    id: Type.String({ pattern: CERTIFICATE_ID_PATTERN }),
    /** The issuer's distinguished name, as text, when the certificate was given. */
    issuer: Type.Optional(Type.String({ maxLength: 1024 })),
    serial: Type.String({ pattern: '^[0-9a-f]{1,40}$' }),
    /** The person the certificate named, when known. */
    person: Type.Optional(Type.String({ maxLength: 128 })),
    revokedAt: Type.String(),
    /** Who revoked it: an operator credential id, or `cli`. */
    revokedBy: Type.String({ maxLength: 256 }),
  },
  { additionalProperties: false },
);
export type CertificateRevocation = Static<typeof CertificateRevocationSchema>;

export interface CertificateRevocationStore {
  get(id: string): Promise<CertificateRevocation | undefined>;
  put(record: CertificateRevocation): Promise<void>;
  list(): Promise<CertificateRevocation[]>;
}

function parse(id: string, text: string): CertificateRevocation {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new OperatorStoreCorruptError(`certificate revocation ${id} is not JSON`, { cause: e });
  }
  if (!Check(CertificateRevocationSchema, value) || value.id !== id) {
    throw new OperatorStoreCorruptError(`certificate revocation ${id} is not a valid record`);
  }
  return value;
}

function revocationsSublevel(db: Database) {
  return db.sublevel('operator-cert-revocations', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
}

export class LevelCertificateRevocationStore implements CertificateRevocationStore {
  readonly #sub: ReturnType<typeof revocationsSublevel>;

  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
    this.#sub = revocationsSublevel(db);
  }

  async get(id: string): Promise<CertificateRevocation | undefined> {
    const text = await this.#sub.get(id);
    return text === undefined ? undefined : parse(id, text);
  }

  async put(record: CertificateRevocation): Promise<void> {
    await this.#db.batch(
      [{ type: 'put', key: record.id, value: JSON.stringify(record), sublevel: this.#sub }],
      { sync: true },
    );
  }

  async list(): Promise<CertificateRevocation[]> {
    const out: CertificateRevocation[] = [];
    for await (const [id, text] of this.#sub.iterator()) out.push(parse(id, text));
    return out;
  }
}
