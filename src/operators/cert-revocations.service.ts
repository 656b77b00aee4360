/**
 * Revoking operator client certificates while the appliance runs: by the certificate
 * itself (PEM: its issuer and serial are read from it) or by its credential id as the
 * audit log shows it (`cert:<issuer hash>:<serial>`). The verifier reads the same store
 * on every request.
 */
import { BadRequestError } from '../shared/errors.js';
import {
  CERTIFICATE_ID_PATTERN,
  type CertificateRevocation,
  type CertificateRevocationStore,
} from './cert-revocations.js';
import { certificateId, personNames } from './client-cert.js';
import { NO_EVENTS, type CredentialEventSink } from './events.js';
import { normaliseIdentifier } from './people.js';
import * as x509 from './x509.js';

const ID = new RegExp(CERTIFICATE_ID_PATTERN);

export class CertificateRevocations {
  readonly #store: CertificateRevocationStore;
  readonly #clock: () => Date;
  readonly #onEvent: CredentialEventSink;
  constructor(
    store: CertificateRevocationStore,
    now: () => number = Date.now,
    onEvent: CredentialEventSink = NO_EVENTS,
  ) {
    this.#store = store;
    this.#clock = () => new Date(now());
    this.#onEvent = onEvent;
  }

  /** What a revocation would record, without recording it (validate before auditing). */
  describe(input: { readonly pem?: string; readonly id?: string }): {
    id: string;
    serial: string;
    issuer?: string;
    person?: string;
  } {
    if ((input.pem === undefined) === (input.id === undefined)) {
      throw new BadRequestError('give exactly one of pem or id');
    }
    if (input.id !== undefined) {
      if (!ID.test(input.id)) throw new BadRequestError('id must be cert:<16 hex>:<serial hex>');
      return { id: input.id, serial: input.id.split(':')[2] ?? '' };
    }
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(input.pem ?? '');
    } catch (e) {
      throw new BadRequestError('pem is not a certificate', { cause: e });
    }
    const id = certificateId(cert);
    const named = personNames(cert).ids[0];
    const person = named === undefined ? undefined : normaliseIdentifier(named);
    return {
      id,
      serial: id.split(':')[2] ?? '',
      issuer: cert.issuer,
      ...(person === undefined ? {} : { person }),
    };
  }

  async revoke(
    input: { readonly pem?: string; readonly id?: string },
    by: string,
  ): Promise<CertificateRevocation> {
    const d = this.describe(input);
    const existing = await this.#store.get(d.id);
    if (existing !== undefined) return existing;
    const record: CertificateRevocation = {
      ...d,
      revokedAt: this.#clock().toISOString(),
      revokedBy: by,
    };
    await this.#onEvent({
      type: 'operator.certificate_revoked',
      subject: record.id,
      ...(record.person === undefined ? {} : { person: record.person }),
      by,
      time: record.revokedAt,
    });
    await this.#store.put(record);
    return record;
  }

  async list(): Promise<CertificateRevocation[]> {
    return (await this.#store.list()).sort((a, b) => a.revokedAt.localeCompare(b.revokedAt));
  }
}
