/**
 * EK certificate validation against the operator's bundle of TPM-manufacturer CA
 * certificates (TCG EK Credential Profile 2.x): chain, validity at `now`, the EK extended
 * key usage where present, the subject alternative name, and the certified key being the
 * EK. Signatures and validity through node:crypto's X509Certificate.
 */
import { createHash, X509Certificate, type JsonWebKey } from 'node:crypto';
import { EkCaBundleInvalidError } from './errors.js';
import { TPM_ALG, TPM_ECC } from '../tpm/marshal/constants.js';
import type { EccPublic, RsaPublic, TpmtPublic } from '../tpm/marshal/public.js';
import {
  EK_TEMPLATE_ECC_P256,
  EK_TEMPLATE_ECC_P384,
  EK_TEMPLATE_RSA2048,
  withUnique,
} from '../tpm/templates.js';
import { DerError, certificateExtensions, directoryNameAttributes, readTlv } from './der.js';
import {
  EkCertificateEkuError,
  EkCertificateExpiredError,
  EkCertificateInvalidError,
  EkCertificateKeyMismatchError,
  EkCertificateSanError,
  EkCertificateUntrustedError,
  EkKeyUnsupportedError,
  EkKeyWeakError,
  EkPublicInvalidError,
} from './errors.js';
import { attestationCurve, attestationCurveOfJwk } from './curves.js';
import { hasRocaFingerprint } from './roca.js';

/** TCG OIDs (TCG EK Credential Profile, section 3). */
export const TCG_OID = {
  ekCertificate: '2.23.133.8.1',
  tpmManufacturer: '2.23.133.2.1',
  tpmModel: '2.23.133.2.2',
  tpmVersion: '2.23.133.2.3',
} as const;

const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_KEY_USAGE = '2.5.29.15';
const OID_ANY_EKU = '2.5.29.37.0';
const MAX_CHAIN = 8;

export interface TpmIdentity {
  /** "id:XXXXXXXX", the TCG vendor id. */
  readonly manufacturer: string;
  readonly model: string;
  readonly version: string;
}

export interface ValidatedEk {
  /** The EK public area: the one given, or the default template filled with the certified key. */
  readonly ekPublic: TpmtPublic;
  readonly tpm: TpmIdentity;
  /** Subjects of the chain, leaf issuer first (for the audit facts). */
  readonly chain: readonly string[];
  /** Hex SHA-256 of each CA certificate of the chain, leaf issuer first (enrollment rules). */
  readonly chainSha256: readonly string[];
  /** The leaf's issuer and serial number (what operators see in the inventory). */
  readonly issuer: string;
  readonly serialNumber: string;
}

/** Parse a PEM bundle (several certificates concatenated) into certificates. */
export function parseCaBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/** The most certificates a trusted EK CA bundle may hold (the shipped one has ~70). */
export const MAX_EK_CA_CERTIFICATES = 512;

export interface EkCaCertificateView {
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  /** Hex SHA-256 of the DER, lower case without colons. */
  readonly sha256: string;
  readonly notBefore: string;
  readonly notAfter: string;
}

/** What operators see of a trusted certificate (GET /v1/attestation/ek-ca). */
export function describeCertificate(cert: X509Certificate): EkCaCertificateView {
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
    sha256: createHash('sha256').update(cert.raw).digest('hex'),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
  };
}

/**
 * Validate a replacement EK CA bundle before anything trusts it, in this order: not empty;
 * nothing but certificates (a private key pasted into a bundle is refused, not ignored);
 * at most MAX_EK_CA_CERTIFICATES; every certificate parses, is a CA (basicConstraints
 * CA:TRUE: only a CA may anchor an EK chain) and is valid at `now`.
 */
export function validateEkCaBundle(pem: string, now: Date): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const begins = pem.match(/-----BEGIN [A-Z0-9 ]+-----/g) ?? [];
  if (blocks.length === 0) {
    throw new EkCaBundleInvalidError('the bundle holds no certificate', { reason: 'empty' });
  }
  if (begins.length !== blocks.length) {
    throw new EkCaBundleInvalidError('the bundle holds something other than certificates', {
      reason: 'not_a_certificate',
    });
  }
  if (blocks.length > MAX_EK_CA_CERTIFICATES) {
    throw new EkCaBundleInvalidError(
      `the bundle holds more than ${MAX_EK_CA_CERTIFICATES} certificates`,
      { reason: 'too_many' },
    );
  }
  return blocks.map((block, index) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch {
      throw new EkCaBundleInvalidError(`certificate ${index} does not parse`, {
        index,
        reason: 'unparseable',
      });
    }
    if (!cert.ca) {
      throw new EkCaBundleInvalidError(`certificate ${index} is not a CA certificate`, {
        index,
        reason: 'not_ca',
      });
    }
    if (!validAt(cert, now)) {
      const expired = Date.parse(cert.validTo) < now.getTime();
      throw new EkCaBundleInvalidError(
        `certificate ${index} is ${expired ? 'expired' : 'not yet valid'}`,
        { index, reason: expired ? 'expired' : 'not_yet_valid' },
      );
    }
    return cert;
  });
}

function validAt(cert: X509Certificate, now: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  const t = now.getTime();
  return Number.isFinite(from) && Number.isFinite(to) && from <= t && t <= to;
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Build the chain from `leaf` to a certificate of the bundle (every bundle certificate is
 * a trust anchor the operator chose); each link must verify and be valid at `now`.
 */
function buildChain(
  leaf: X509Certificate,
  bundle: readonly X509Certificate[],
  now: Date,
): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const issuer = bundle.find((ca) => signedBy(current, ca));
    if (issuer === undefined) {
      if (depth === 0) throw new EkCertificateUntrustedError();
      return chain;
    }
    if (!validAt(issuer, now)) throw new EkCertificateExpiredError();
    chain.push(issuer);
    if (issuer.checkIssued(issuer)) return chain;
    current = issuer;
  }
  return chain;
}

/**
 * The TPM manufacturer, model and version from an EK certificate's SAN (TCG EK Credential
 * Profile: a directoryName with tcg-at-tpmManufacturer 2.23.133.2.1, tcg-at-tpmModel
 * 2.23.133.2.2 and tcg-at-tpmVersion 2.23.133.2.3), or null when the certificate carries
 * none that satisfies the profile. Only as trustworthy as the certificate: read it from one
 * that validateEkCertificate accepted.
 */
export function ekTpmIdentity(cert: X509Certificate): TpmIdentity | null {
  try {
    return tpmIdentityFromSan(cert.raw);
  } catch (e) {
    if (e instanceof EkCertificateSanError || e instanceof EkCertificateInvalidError) return null;
    throw e;
  }
}

function tpmIdentityFromSan(der: Uint8Array): TpmIdentity {
  let parsed: ReturnType<typeof certificateExtensions>;
  try {
    parsed = certificateExtensions(der);
  } catch (e) {
    throw new EkCertificateInvalidError(undefined, { cause: e });
  }
  const san = parsed.extensions.find((e) => e.oid === OID_SUBJECT_ALT_NAME);
  if (san === undefined) throw new EkCertificateSanError('the EK certificate has no SAN');
  // Profile: with an empty subject the SAN carries the identity and must be critical.
  if (parsed.subjectEmpty && !san.critical)
    throw new EkCertificateSanError('the SAN must be critical when the subject is empty');
  let names: Map<string, string>[];
  try {
    names = directoryNameAttributes(san.value);
  } catch (e) {
    if (e instanceof DerError) throw new EkCertificateSanError(undefined, { cause: e });
    throw e;
  }
  for (const attrs of names) {
    const manufacturer = attrs.get(TCG_OID.tpmManufacturer);
    const model = attrs.get(TCG_OID.tpmModel);
    const version = attrs.get(TCG_OID.tpmVersion);
    if (manufacturer === undefined || model === undefined || version === undefined) continue;
    if (!/^id:[0-9A-Fa-f]{8}$/.test(manufacturer))
      throw new EkCertificateSanError('tpmManufacturer is not id:XXXXXXXX');
    if (model.length === 0 || version.length === 0)
      throw new EkCertificateSanError('tpmModel or tpmVersion is empty');
    return { manufacturer, model, version };
  }
  throw new EkCertificateSanError(
    'the SAN has no directoryName with TPM manufacturer, model and version',
  );
}

/** KeyUsage bits (RFC 5280 4.2.1.3), first octet after the unused-bits octet. */
const KU_KEY_ENCIPHERMENT = 0x20;
const KU_KEY_AGREEMENT = 0x08;

/**
 * Where the certificate has a KeyUsage, it must allow the EK's use (TCG EK Credential
 * Profile: keyEncipherment for RSA, keyAgreement for ECC). Refuses, for instance, an AK
 * certificate that carries the EK purpose OID (Google's vTPM AK certificates do).
 */
function checkKeyUsage(der: Uint8Array, cert: X509Certificate): void {
  let ku: Uint8Array | undefined;
  try {
    const ext = certificateExtensions(der).extensions.find((e) => e.oid === OID_KEY_USAGE);
    if (ext === undefined) return;
    const bits = readTlv(ext.value, 0);
    if (bits.tag !== 0x03 || bits.end !== ext.value.length) throw new DerError('not a BIT STRING');
    ku = bits.value;
  } catch (e) {
    throw new EkCertificateInvalidError(undefined, { cause: e });
  }
  const first = ku[1] ?? 0;
  const needed = cert.publicKey.asymmetricKeyType === 'ec' ? KU_KEY_AGREEMENT : KU_KEY_ENCIPHERMENT;
  if ((first & needed) === 0)
    throw new EkCertificateInvalidError('the certified key is not for EK use (key usage)', {
      details: { reason: 'key_usage' },
    });
}

/**
 * The DER certificate in what was read from the EK certificate's NV index. TPMs store it in
 * an index larger than the certificate and tools read the whole index, so the DER may be
 * followed by padding: cut at the end of the outer SEQUENCE when everything after it is 0xFF
 * or everything is 0x00 (erased or zeroed NV). Any other trailing byte is refused: it is not
 * padding but data no signature covers.
 */
export function trimNvPadding(read: Uint8Array): Buffer {
  const bytes = Buffer.from(read);
  let end: number;
  try {
    const outer = readTlv(bytes, 0);
    if (outer.tag !== 0x30) throw new DerError('not a SEQUENCE');
    end = outer.end;
  } catch (e) {
    throw new EkCertificateInvalidError(undefined, { cause: e });
  }
  if (end === bytes.length) return bytes;
  const rest = bytes.subarray(end);
  const fill = rest[0];
  if ((fill !== 0xff && fill !== 0x00) || !rest.every((b) => b === fill))
    throw new EkCertificateInvalidError('bytes other than NV padding follow the certificate', {
      details: { reason: 'trailing_bytes' },
    });
  return bytes.subarray(0, end);
}

function checkEku(der: Uint8Array, cert: X509Certificate): void {
  let hasEku: boolean;
  try {
    hasEku = certificateExtensions(der).extensions.some((e) => e.oid === OID_EXT_KEY_USAGE);
  } catch (e) {
    throw new EkCertificateInvalidError(undefined, { cause: e });
  }
  if (!hasEku) return;
  // node:crypto lists the extended key usages as `keyUsage`.
  const usages = cert.keyUsage as readonly string[] | undefined;
  if (usages === undefined) return;
  if (!usages.includes(TCG_OID.ekCertificate) && !usages.includes(OID_ANY_EKU))
    throw new EkCertificateEkuError();
}

function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

function stripZeros(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i);
}

function leftPad(bytes: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(Math.max(size, bytes.length));
  out.set(bytes, out.length - bytes.length);
  return out;
}

/** The EK public area for a certified key: the EK Credential Profile default template. */
export function ekPublicFromJwk(jwk: JsonWebKey): TpmtPublic {
  if (jwk.kty === 'RSA' && typeof jwk.n === 'string' && typeof jwk.e === 'string') {
    const n = stripZeros(Buffer.from(jwk.n, 'base64url'));
    const e = Buffer.from(jwk.e, 'base64url').readUIntBE(
      0,
      Math.min(6, Buffer.from(jwk.e, 'base64url').length),
    );
    if (n.length !== 256) throw new EkKeyUnsupportedError();
    const base = withUnique(EK_TEMPLATE_RSA2048, Buffer.from(n));
    return { ...base, parameters: { ...base.parameters, exponent: e === 65537 ? 0 : e } };
  }
  if (jwk.kty === 'EC' && typeof jwk.x === 'string' && typeof jwk.y === 'string') {
    const curve = attestationCurveOfJwk(jwk.crv);
    if (curve === undefined) throw new EkKeyUnsupportedError();
    const template = curve.id === TPM_ECC.NIST_P256 ? EK_TEMPLATE_ECC_P256 : EK_TEMPLATE_ECC_P384;
    return withUnique(template, {
      x: leftPad(Buffer.from(jwk.x, 'base64url'), curve.size),
      y: leftPad(Buffer.from(jwk.y, 'base64url'), curve.size),
    });
  }
  throw new EkKeyUnsupportedError();
}

/**
 * The EK must be a restricted decryption (storage) key with an AES-CFB symmetric, RSA-2048+
 * or ECC P-256/P-384, and a name algorithm of SHA-256 or stronger, so MakeCredential can
 * target it.
 */
export function checkEkPublic(ek: TpmtPublic): RsaPublic | EccPublic {
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC) throw new EkKeyUnsupportedError();
  const a = ek.objectAttributes;
  if (!a.restricted || !a.decrypt || a.sign)
    throw new EkPublicInvalidError('the EK is not a restricted decryption key');
  if (
    ek.nameAlg !== TPM_ALG.SHA256 &&
    ek.nameAlg !== TPM_ALG.SHA384 &&
    ek.nameAlg !== TPM_ALG.SHA512
  )
    throw new EkPublicInvalidError('the EK name algorithm is not SHA-256 or stronger');
  const sym = ek.parameters.symmetric;
  if (
    sym.algorithm !== TPM_ALG.AES ||
    sym.mode !== TPM_ALG.CFB ||
    (sym.keyBits !== 128 && sym.keyBits !== 256)
  )
    throw new EkPublicInvalidError('the EK symmetric is not AES-128/256-CFB');
  if (ek.type === TPM_ALG.RSA) {
    if (ek.parameters.keyBits < 2048 || ek.unique.length * 8 !== ek.parameters.keyBits)
      throw new EkKeyUnsupportedError();
    // A ROCA modulus can be factored: whoever does can activate credentials without the TPM.
    if (hasRocaFingerprint(ek.unique)) throw new EkKeyWeakError();
    return ek;
  }
  const size = attestationCurve(ek.parameters.curveId)?.size;
  if (size === undefined) throw new EkKeyUnsupportedError();
  if (ek.unique.x.length !== size || ek.unique.y.length !== size)
    throw new EkPublicInvalidError('the EK point has the wrong size for its curve');
  return ek;
}

function sameKey(jwk: JsonWebKey, ek: TpmtPublic): boolean {
  if (ek.type === TPM_ALG.RSA && jwk.kty === 'RSA' && typeof jwk.n === 'string') {
    const e = ek.parameters.exponent === 0 ? 65537 : ek.parameters.exponent;
    const jwkE = Buffer.from(jwk.e ?? '', 'base64url');
    return (
      b64u(stripZeros(ek.unique)) === b64u(stripZeros(Buffer.from(jwk.n, 'base64url'))) &&
      jwkE.length > 0 &&
      jwkE.length <= 6 &&
      jwkE.readUIntBE(0, jwkE.length) === e
    );
  }
  if (ek.type === TPM_ALG.ECC && jwk.kty === 'EC' && jwk.crv !== undefined) {
    const curve = attestationCurveOfJwk(jwk.crv);
    if (curve?.id !== ek.parameters.curveId) return false;
    return (
      b64u(leftPad(ek.unique.x, curve.size)) ===
        b64u(leftPad(Buffer.from(jwk.x ?? '', 'base64url'), curve.size)) &&
      b64u(leftPad(ek.unique.y, curve.size)) ===
        b64u(leftPad(Buffer.from(jwk.y ?? '', 'base64url'), curve.size))
    );
  }
  return false;
}

export interface EkCertificateOptions {
  readonly trustedCas: readonly X509Certificate[];
  readonly now: Date;
  /** The EK public area the runtime presented (TPM2B_PUBLIC parsed), if any. */
  readonly ekPublic?: TpmtPublic | undefined;
}

/**
 * Validate an EK certificate, in this order: cut NV padding; parse; chain to a trusted CA;
 * the leaf valid at `now`; EKU (where present) allows the TCG EK purpose; KeyUsage (where
 * present) allows encipherment (RSA) or key agreement (ECC); SAN per the profile; the
 * certified key is the EK. Returns the EK public area to make credentials against.
 *
 * Names are compared and signatures checked by OpenSSL on the bytes as sent, never
 * re-encoded: Nuvoton's CA and EK certificates carry multi-valued RDNs whose SET is not in
 * DER order, which strict parsers refuse; they are accepted here (docs/attestation.md).
 */
export function validateEkCertificate(der: Uint8Array, options: EkCertificateOptions): ValidatedEk {
  const bytes = trimNvPadding(der);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(bytes);
  } catch (e) {
    throw new EkCertificateInvalidError(undefined, { cause: e });
  }
  if (cert.ca) throw new EkCertificateInvalidError('the EK certificate is a CA certificate');
  const chain = buildChain(cert, options.trustedCas, options.now);
  if (!validAt(cert, options.now)) throw new EkCertificateExpiredError();
  checkEku(bytes, cert);
  checkKeyUsage(bytes, cert);
  const tpm = tpmIdentityFromSan(bytes);
  const jwk = cert.publicKey.export({ format: 'jwk' });
  let ekPublic: TpmtPublic;
  if (options.ekPublic !== undefined) {
    if (!sameKey(jwk, options.ekPublic)) throw new EkCertificateKeyMismatchError();
    ekPublic = options.ekPublic;
  } else {
    ekPublic = ekPublicFromJwk(jwk);
  }
  checkEkPublic(ekPublic);
  return {
    ekPublic,
    tpm,
    chain: chain.map((c) => c.subject),
    chainSha256: chain.map((c) => describeCertificate(c).sha256),
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
  };
}
