/** Test certificates made with @peculiar/x509: an operator CA and client certificates. */
import { webcrypto } from 'node:crypto';
import * as x509 from '../x509.js';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

export interface TestCa {
  readonly cert: x509.X509Certificate;
  readonly keys: webcrypto.CryptoKeyPair;
  readonly pem: string;
}

export async function makeCa(name = 'grantor operator CA', now = new Date()): Promise<TestCa> {
  const keys = await webcrypto.subtle.generateKey(ALG, false, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: ALG,
    notBefore: new Date(now.getTime() - DAY),
    notAfter: new Date(now.getTime() + 30 * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  return { cert, keys, pem: cert.toString('pem') };
}

export interface LeafOptions {
  readonly cn?: string;
  readonly ou?: readonly string[];
  readonly uris?: readonly string[];
  /** SAN e-mail addresses (default `alice@example.com`, naming the test person alice). */
  readonly emails?: readonly string[];
  readonly serial?: string;
  readonly eku?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export async function makeLeaf(ca: TestCa, options: LeafOptions = {}): Promise<Uint8Array> {
  const keys = await webcrypto.subtle.generateKey(ALG, false, ['sign', 'verify']);
  const now = Date.now();
  const subject = [`CN=${options.cn ?? 'alice'}`, ...(options.ou ?? []).map((o) => `OU=${o}`)];
  const extensions: x509.Extension[] = [
    new x509.ExtendedKeyUsageExtension(
      [...(options.eku ?? [x509.ExtendedKeyUsage.clientAuth])],
      false,
    ),
  ];
  const names = [
    ...(options.uris ?? []).map((u) => ({ type: 'url' as const, value: u })),
    ...(options.emails ?? ['alice@example.com']).map((e) => ({ type: 'email' as const, value: e })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    subject: subject.join(', '),
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    ...(options.serial === undefined ? {} : { serialNumber: options.serial }),
    notBefore: options.notBefore ?? new Date(now - DAY),
    notAfter: options.notAfter ?? new Date(now + 7 * DAY),
    extensions,
  });
  return new Uint8Array(cert.rawData);
}
