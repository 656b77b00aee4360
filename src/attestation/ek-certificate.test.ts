import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TPM_ALG } from '../tpm/marshal/constants.js';
import { unmarshalTpm2bPublic, type TpmtPublic } from '../tpm/marshal/public.js';
import { EK_TEMPLATE_RSA2048 } from '../tpm/templates.js';
import { parseCaBundle, validateEkCertificate } from './ek-certificate.js';
import { thrownCode } from '../shared/testing/refusal.js';

const dir = join(import.meta.dirname, 'fixtures');
const fixture = (name: string): Buffer => readFileSync(join(dir, name));
const trustedCas = parseCaBundle(readFileSync(join(dir, 'ca-chain.pem'), 'utf8'));
const now = new Date('2030-01-01T00:00:00Z');
const ekRsaPub = unmarshalTpm2bPublic(fixture('ek-rsa.pub'));
const ekEccPub = unmarshalTpm2bPublic(fixture('ek-ecc384.pub'));

describe('validateEkCertificate (swtpm EK certificates and local CA)', () => {
  it('accepts the RSA EK certificate and reports the TPM identity from the SAN', () => {
    const v = validateEkCertificate(fixture('ek-rsa.der'), { trustedCas, now, ekPublic: ekRsaPub });
    expect(v.tpm).toEqual({ manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' });
    expect(v.chain).toEqual(['CN=swtpm-localca', 'CN=swtpm-localca-rootca']);
    expect(v.ekPublic).toBe(ekRsaPub);
  });

  it('accepts the P-384 EK certificate with its EK public area', () => {
    const v = validateEkCertificate(fixture('ek-ecc384.der'), {
      trustedCas,
      now,
      ekPublic: ekEccPub,
    });
    expect(v.ekPublic.type).toBe(TPM_ALG.ECC);
  });

  it('derives the EK public area from the certificate with the default template', () => {
    for (const [der, pub] of [
      ['ek-rsa.der', ekRsaPub],
      ['ek-ecc384.der', ekEccPub],
    ] as const) {
      const v = validateEkCertificate(fixture(der), { trustedCas, now });
      // Same key, template and attributes as what the TPM reports: the same public area.
      expect(normalise(v.ekPublic)).toEqual(normalise(pub));
    }
  });

  it('refuses bytes that are not a certificate', () => {
    expect(
      thrownCode(() =>
        validateEkCertificate(Buffer.from('3003020101', 'hex'), { trustedCas, now }),
      ),
    ).toBe('ek_certificate_invalid');
  });

  it('refuses a certificate from a CA that is not in the bundle (real vendor roots)', () => {
    const vendorDir = join(dir, 'tpm-vendor-ca');
    const vendor = readdirSync(vendorDir)
      .filter((f) => f.endsWith('.pem'))
      .flatMap((f) => {
        try {
          return parseCaBundle(readFileSync(join(vendorDir, f), 'utf8'));
        } catch {
          return [];
        }
      });
    expect(vendor.length).toBeGreaterThan(10);
    expect(
      thrownCode(() => validateEkCertificate(fixture('ek-rsa.der'), { trustedCas: vendor, now })),
    ).toBe('ek_certificate_untrusted');
    expect(
      thrownCode(() => validateEkCertificate(fixture('ek-rsa.der'), { trustedCas: [], now })),
    ).toBe('ek_certificate_untrusted');
  });

  it('refuses a vendor CA certificate presented as an EK certificate', () => {
    const pem = readFileSync(join(dir, 'tpm-vendor-ca/STM_RSA_RT.pem'), 'utf8');
    const [ca] = parseCaBundle(pem);
    expect(thrownCode(() => validateEkCertificate(ca!.raw, { trustedCas: [ca!], now }))).toBe(
      'ek_certificate_invalid',
    );
  });

  it('refuses a chain that is not valid at the injected time', () => {
    expect(
      thrownCode(() =>
        validateEkCertificate(fixture('ek-rsa.der'), {
          trustedCas,
          now: new Date('2001-01-01T00:00:00Z'),
        }),
      ),
    ).toBe('ek_certificate_expired');
  });

  it('refuses an EKU without the TCG EK purpose', () => {
    expect(
      thrownCode(() => validateEkCertificate(fixture('bad-eku.der'), { trustedCas, now })),
    ).toBe('ek_certificate_eku_invalid');
  });

  it('refuses a certificate without SAN, without TPM attributes, or with an empty subject and a non-critical SAN', () => {
    for (const name of ['no-san.der', 'san-no-tpm.der', 'san-noncritical-empty-subject.der']) {
      expect(thrownCode(() => validateEkCertificate(fixture(name), { trustedCas, now }))).toBe(
        'ek_certificate_san_invalid',
      );
    }
  });

  it('refuses an EK public area that is not the certified key', () => {
    expect(
      thrownCode(() =>
        validateEkCertificate(fixture('ek-rsa.der'), { trustedCas, now, ekPublic: ekEccPub }),
      ),
    ).toBe('ek_certificate_key_mismatch');
    const otherModulus = { ...ekRsaPub, unique: Buffer.alloc(256, 7) } as TpmtPublic;
    expect(
      thrownCode(() =>
        validateEkCertificate(fixture('ek-rsa.der'), { trustedCas, now, ekPublic: otherModulus }),
      ),
    ).toBe('ek_certificate_key_mismatch');
  });

  it('refuses an EK public area that is not a storage key', () => {
    const signing = {
      ...ekRsaPub,
      objectAttributes: { ...EK_TEMPLATE_RSA2048.objectAttributes, decrypt: false, sign: true },
    } as TpmtPublic;
    expect(
      thrownCode(() =>
        validateEkCertificate(fixture('ek-rsa.der'), { trustedCas, now, ekPublic: signing }),
      ),
    ).toBe('ek_public_invalid');
  });
});

function normalise(p: TpmtPublic): unknown {
  return JSON.parse(
    JSON.stringify(p, (_k, v: unknown) =>
      v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v,
    ),
  ) as unknown;
}
