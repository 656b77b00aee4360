/**
 * Operators authenticated by client certificate. The certificate must be issued directly
 * by a configured operator CA, valid at `now`, usable for TLS client authentication, and
 * name exactly one role: a SAN URI `urn:grantor:role:<role>` or, failing that, an OU equal
 * to a role name. A certificate naming a runtime (`urn:grantor:runtime:...`) is never an
 * operator. TLS already checked the chain (`socket.authorized`); this check is repeated
 * here against the operator CA alone, so a CA added to the listener for another purpose
 * can never mint operators.
 */
import * as x509 from './x509.js';
import { ForbiddenError, UnauthenticatedError } from './errors.js';
import { isRole, type OperatorActor, type Role } from './roles.js';

export const ROLE_URI_PREFIX = 'urn:grantor:role:';
export const RUNTIME_URI_PREFIX = 'urn:grantor:runtime:';
const MAX_CA_CERTIFICATES = 16;

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
  const fromUris = sanUris(cert)
    .filter((u) => u.startsWith(ROLE_URI_PREFIX))
    .map((u) => u.slice(ROLE_URI_PREFIX.length));
  const candidates = fromUris.length > 0 ? fromUris : cert.subjectName.getField('OU');
  const roles = new Set(candidates);
  if (roles.size !== 1) return undefined;
  const [role] = roles;
  return isRole(role) ? role : undefined;
}

export class OperatorCertificateVerifier {
  private readonly anchors: readonly x509.X509Certificate[];

  /** `caPem`: the operator CA certificate(s), PEM. */
  constructor(caPem: string) {
    const anchors = parsePem(caPem);
    if (anchors.length === 0 || anchors.length > MAX_CA_CERTIFICATES) {
      throw new TypeError(`operator CA bundle must hold 1..${MAX_CA_CERTIFICATES} certificates`);
    }
    this.anchors = anchors;
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
    if (!(await this.issuedByAnchor(cert, now))) {
      throw new UnauthenticatedError('the client certificate is not issued by the operator CA');
    }
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    // A server or code-signing certificate of the same CA is not an operator login.
    if (eku !== null && !eku.usages.includes(x509.ExtendedKeyUsage.clientAuth)) {
      throw new UnauthenticatedError('the client certificate is not for client authentication');
    }
    // Runtime identities never act as operators, whatever else the certificate says.
    if (sanUris(cert).some((u) => u.startsWith(RUNTIME_URI_PREFIX))) {
      throw new ForbiddenError('a runtime identity cannot act as an operator');
    }
    const role = roleFromCertificate(cert);
    if (role === undefined) {
      throw new UnauthenticatedError('the client certificate names no single operator role');
    }
    const cn = cert.subjectName.getField('CN')[0] ?? cert.subject;
    return {
      kind: 'operator',
      id: `cert:${cert.serialNumber.toLowerCase()}`,
      role,
      name: cn,
      credential: 'certificate',
    };
  }

  private async issuedByAnchor(cert: x509.X509Certificate, now: Date): Promise<boolean> {
    for (const anchor of this.anchors) {
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
