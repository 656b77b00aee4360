/**
 * Operators authenticated by client certificate. The certificate must be issued directly
 * by a configured operator CA, valid at `now`, usable for TLS client authentication, not
 * on the denylist (issuer and serial), name exactly one role (a SAN URI
 * `urn:grantor:role:<role>` or, when the SAN holds no URI at all, an OU equal to a role
 * name) and exactly one registered person who holds that role (a SAN URI
 * `urn:grantor:operator:<id>` or a SAN e-mail address in the person's record). A
 * certificate naming a runtime (`urn:grantor:runtime:...`) is never an operator. URNs are
 * compared without regard to case (RFC 8141 §3.1: scheme and namespace are
 * case-insensitive; grantor's own names are too). TLS already checked the chain
 * (`socket.authorized`); this check is repeated here against the operator CA alone, so a
 * CA added to the listener for another purpose can never mint operators.
 */
import { createHash } from 'node:crypto';
import * as x509 from './x509.js';
import type { CertificateRevocationStore } from './cert-revocations.js';
import { ForbiddenError, UnauthenticatedError } from './errors.js';
import { normaliseIdentifier, type People } from './people.js';
import { isRole, type OperatorActor, type Role } from './roles.js';

export const ROLE_URI_PREFIX = 'urn:grantor:role:';
export const RUNTIME_URI_PREFIX = 'urn:grantor:runtime:';
export const OPERATOR_URI_PREFIX = 'urn:grantor:operator:';
const MAX_CA_CERTIFICATES = 16;

/** The value after `prefix` when `uri` starts with it, case-insensitively (RFC 8141). */
function afterPrefix(uri: string, prefix: string): string | undefined {
  const head = uri.slice(0, prefix.length);
  return head.toLowerCase() === prefix ? uri.slice(prefix.length) : undefined;
}

/**
 * The credential id of a certificate: `cert:` + 16 hex of SHA-256 over the issuer name's
 * DER + `:` + the serial in lower-case hex without leading zeros. A serial is unique only
 * per issuer, so the issuer is part of the id.
 */
export function certificateId(cert: x509.X509Certificate): string {
  const issuer = createHash('sha256')
    .update(Buffer.from(cert.issuerName.toArrayBuffer()))
    .digest('hex')
    .slice(0, 16);
  const serial = cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
  return `cert:${issuer}:${serial}`;
}

function sanEmails(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san === null) return [];
  return san.names.items.filter((n) => n.type === 'email').map((n) => n.value);
}

function parsePem(pem: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new x509.X509Certificate(b));
}

function sanUris(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san === null) return [];
  return san.names.items.filter((n) => n.type === 'url').map((n) => n.value);
}

/**
 * The role a certificate names: SAN URIs first (the OU is consulted only when no role URI
 * exists). Several distinct roles is ambiguous and names none.
 */
export function roleFromCertificate(cert: x509.X509Certificate): Role | undefined {
  const uris = sanUris(cert);
  const fromUris = uris
    .map((u) => afterPrefix(u, ROLE_URI_PREFIX))
    .filter((r): r is string => r !== undefined);
  // Whenever the SAN holds a URI, it alone decides: an OU cannot add a role beside it.
  const candidates = uris.length > 0 ? fromUris : cert.subjectName.getField('OU');
  const roles = new Set(candidates.map(normaliseIdentifier));
  if (roles.size !== 1) return undefined;
  const [role] = roles;
  return isRole(role) ? role : undefined;
}

/** The person ids (SAN URIs) and e-mail addresses a certificate names. */
export function personNames(cert: x509.X509Certificate): { ids: string[]; emails: string[] } {
  const ids = sanUris(cert)
    .map((u) => afterPrefix(u, OPERATOR_URI_PREFIX))
    .filter((r): r is string => r !== undefined);
  return { ids, emails: sanEmails(cert) };
}

export interface CertificateVerifierOptions {
  /** The operator registry: the certificate must name one registered person. */
  readonly people: People;
  /** The denylist; none: no certificate is revoked. */
  readonly revocations?: CertificateRevocationStore;
}

export class OperatorCertificateVerifier {
  readonly #anchors: readonly x509.X509Certificate[];
  readonly #people: People;
  readonly #revocations: CertificateRevocationStore | undefined;

  /** `caPem`: the operator CA certificate(s), PEM. */
  constructor(caPem: string, options: CertificateVerifierOptions) {
    this.#people = options.people;
    this.#revocations = options.revocations;
    const anchors = parsePem(caPem);
    if (anchors.length === 0 || anchors.length > MAX_CA_CERTIFICATES) {
      throw new TypeError(`operator CA bundle must hold 1..${MAX_CA_CERTIFICATES} certificates`);
    }
    this.#anchors = anchors;
  }

  /** The operator a DER client certificate stands for, or a typed refusal. */
  async verify(der: Uint8Array, now: Date): Promise<OperatorActor> {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(Uint8Array.from(der));
    } catch {
      throw new UnauthenticatedError('the client certificate does not parse');
    }
    if (now < cert.notBefore || now > cert.notAfter) {
      throw new UnauthenticatedError('the client certificate is not valid now');
    }
    if (!(await this.#issuedByAnchor(cert, now))) {
      throw new UnauthenticatedError('the client certificate is not issued by the operator CA');
    }
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    // A server or code-signing certificate of the same CA is not an operator login.
    if (eku !== null && !eku.usages.includes(x509.ExtendedKeyUsage.clientAuth)) {
      throw new UnauthenticatedError('the client certificate is not for client authentication');
    }
    // Runtime identities never act as operators, whatever else the certificate says.
    if (sanUris(cert).some((u) => afterPrefix(u, RUNTIME_URI_PREFIX) !== undefined)) {
      throw new ForbiddenError('a runtime identity cannot act as an operator');
    }
    const id = certificateId(cert);
    if ((await this.#revocations?.get(id)) !== undefined) {
      throw new UnauthenticatedError('the client certificate is revoked');
    }
    const role = roleFromCertificate(cert);
    if (role === undefined) {
      throw new UnauthenticatedError('the client certificate names no single operator role');
    }
    const names = personNames(cert);
    const people = await this.#people.named(names.ids, names.emails);
    // One person, holding the role: a certificate naming two people names nobody.
    const person = people.length === 1 ? people[0] : undefined;
    if (person === undefined || !person.roles.includes(role)) {
      throw new UnauthenticatedError('the client certificate names no registered operator');
    }
    return {
      kind: 'operator',
      id,
      person: person.id,
      role,
      name: person.displayName,
      credential: 'certificate',
      expiresAt: cert.notAfter.toISOString(),
    };
  }

  /** Is the certificate `id` still usable by `person` in `role` (consume-time check)? */
  async stillValid(
    id: string,
    person: string,
    role: Role,
    expiresAt: string,
    now: Date,
  ): Promise<boolean> {
    if (now.getTime() >= Date.parse(expiresAt)) return false;
    if ((await this.#revocations?.get(id)) !== undefined) return false;
    return (await this.#people.holding(person, role)) !== undefined;
  }

  async #issuedByAnchor(cert: x509.X509Certificate, now: Date): Promise<boolean> {
    for (const anchor of this.#anchors) {
      if (anchor.subject !== cert.issuer) continue;
      const bc = anchor.getExtension(x509.BasicConstraintsExtension);
      if (bc === null || !bc.ca) continue;
      if (now < anchor.notBefore || now > anchor.notAfter) continue;
      try {
        if (await cert.verify({ publicKey: anchor.publicKey, signatureOnly: true })) return true;
      } catch {
        // A signature that cannot be checked is not a signature.
      }
    }
    return false;
  }
}
