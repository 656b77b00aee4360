/**
 * Real vendor EK certificates (keylime's STMicro, Nuvoton and Infineon leaves, Google vTPM
 * EKs) against real vendor CA sets: each chains, or is refused with the code that says why.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ekTpmIdentity,
  parseCaBundle,
  trimNvPadding,
  validateEkCertificate,
} from './ek-certificate.js';
import { EkCertificateInvalidError } from './errors.js';

const dir = join(import.meta.dirname, 'fixtures');
const leafDer = (path: string): Buffer => new X509Certificate(readFileSync(join(dir, path))).raw;
const pemsIn = (folder: string): X509Certificate[] =>
  readdirSync(join(dir, folder))
    .filter((f) => /\.(pem|crt|cer)$/.test(f))
    .flatMap((f) => {
      const bytes = readFileSync(join(dir, folder, f));
      return bytes.includes('-----BEGIN CERTIFICATE-----')
        ? parseCaBundle(bytes.toString('utf8'))
        : [new X509Certificate(bytes)];
    });

const keylimeCas = pemsIn('tpm-vendor-ca');
const wideCas = pemsIn('vendor-ek/tpm-ca-certificates');
const googleCas = pemsIn('vendor-ek/go-tpm-tools/ca-certs');
const now = new Date('2026-06-01T00:00:00Z');

function outcome(der: Uint8Array, trustedCas: readonly X509Certificate[]): string {
  try {
    validateEkCertificate(der, { trustedCas, now });
    return 'ok';
  } catch (e) {
    return (e as { code: string }).code;
  }
}

const K = 'vendor-ek/keylime';
const G = 'vendor-ek/go-tpm-tools/certs';

describe('real vendor EK certificates', () => {
  it.each([
    // leaf, with keylime's vendor CA set, with the wider set, with Google's CAs
    [`${K}/stm_st33htph_rsa2048_ek.pem`, 'ok', 'ok', 'ek_certificate_untrusted'],
    [`${K}/stm_st33htph_ecc_p256_ek.pem`, 'ok', 'ok', 'ek_certificate_untrusted'],
    [`${K}/nuvoton_npct75x_rsa2048_ek.pem`, 'ok', 'ok', 'ek_certificate_untrusted'],
    // Issued by Infineon Manufacturing CA 035: absent from keylime's set.
    [
      `${K}/infineon_slb9670_rsa2048_ek.pem`,
      'ek_certificate_untrusted',
      'ok',
      'ek_certificate_untrusted',
    ],
    [
      `${K}/infineon_slb9670_ecc_p256_ek.pem`,
      'ek_certificate_untrusted',
      'ok',
      'ek_certificate_untrusted',
    ],
    [
      `${G}/gce_vtpm_uca_rsa2048_ek.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ok',
    ],
    [
      `${G}/gce_vtpm_uca_ecc_p256_ek.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ok',
    ],
    // Google's instance-named EKs chain but carry no TCG SAN: no TPM identity, refused.
    [
      `${G}/gce_vtpm_pca_rsa2048_ek.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ek_certificate_san_invalid',
    ],
    [
      `${G}/gce_vtpm_pca_ecc_p256_ek.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ek_certificate_san_invalid',
    ],
    // AK certificates (the UCA ones carry the EK purpose OID): their key is for signing.
    [
      `${G}/gce_vtpm_uca_rsa2048_ak.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ek_certificate_invalid',
    ],
    [
      `${G}/gce_vtpm_uca_ecc_p256_ak.pem`,
      'ek_certificate_untrusted',
      'ek_certificate_untrusted',
      'ek_certificate_invalid',
    ],
  ])('%s: %s / %s / %s', (leaf, withKeylime, withWide, withGoogle) => {
    const der = leafDer(leaf);
    expect([outcome(der, keylimeCas), outcome(der, wideCas), outcome(der, googleCas)]).toEqual([
      withKeylime,
      withWide,
      withGoogle,
    ]);
  });

  it('a Google UCA EK does not chain through the other intermediate', () => {
    const onlyOther = googleCas.filter((c) => !c.subject.includes('2021-10-12'));
    expect(onlyOther.length).toBe(googleCas.length - 1);
    expect(outcome(leafDer(`${G}/gce_vtpm_uca_rsa2048_ek.pem`), onlyOther)).toBe(
      'ek_certificate_untrusted',
    );
  });

  it('accepts the Nuvoton EK whose issuer RDN is not in DER SET order, names compared as sent', () => {
    const der = leafDer(`${K}/nuvoton_npct75x_rsa2048_ek.pem`);
    const v = validateEkCertificate(der, { trustedCas: keylimeCas, now });
    expect(v.chain).toEqual([
      'CN=Nuvoton TPM Root CA 2111 + O=Nuvoton Technology Corporation + C=TW',
    ]);
    expect(v.tpm).toEqual({
      manufacturer: 'id:4E544300',
      model: 'NPCT75x',
      version: 'id:00070002',
    });
  });

  it('ekTpmIdentity reads manufacturer, model and version from the SAN of real leaves', () => {
    const id = (p: string): unknown =>
      ekTpmIdentity(new X509Certificate(readFileSync(join(dir, p))));
    expect(id(`${K}/stm_st33htph_rsa2048_ek.pem`)).toEqual({
      manufacturer: 'id:53544D20',
      model: 'ST33HTPHAHB4',
      version: 'id:00490004',
    });
    expect(id(`${K}/infineon_slb9670_ecc_p256_ek.pem`)).toEqual({
      manufacturer: 'id:49465800',
      model: 'SLB 9670 TPM2.0',
      version: 'id:073f',
    });
    expect(id(`${K}/nuvoton_npct75x_rsa2048_ek.pem`)).toEqual({
      manufacturer: 'id:4E544300',
      model: 'NPCT75x',
      version: 'id:00070002',
    });
    expect(id(`${G}/gce_vtpm_uca_ecc_p256_ek.pem`)).toEqual({
      manufacturer: 'id:474F4F47',
      model: 'vTPM',
      version: 'id:20160511',
    });
    expect(id(`${G}/gce_vtpm_pca_rsa2048_ek.pem`)).toBeNull();
    expect(id('no-san.der')).toBeNull();
  });
});

describe('EK certificates read from NV: padding', () => {
  const padded = readFileSync(join(dir, `${K}/stm_st33htph_rsa2048_ek_nv_padded.bin`));
  const der = leafDer(`${K}/stm_st33htph_rsa2048_ek.pem`);

  it('accepts the STMicro certificate read raw from NV (DER then 0xFF), as the DER alone', () => {
    expect(padded.length).toBeGreaterThan(der.length);
    expect(trimNvPadding(padded)).toEqual(der);
    const v = validateEkCertificate(padded, { trustedCas: keylimeCas, now });
    expect(v).toEqual(validateEkCertificate(der, { trustedCas: keylimeCas, now }));
  });

  it('accepts zero padding; refuses mixed padding and any other trailing byte', () => {
    expect(trimNvPadding(Buffer.concat([der, Buffer.alloc(300)]))).toEqual(der);
    for (const tail of [
      Buffer.from([0xff, 0x00]),
      Buffer.from([0x00, 0xff]),
      Buffer.from([0x30, 0x00]),
      Buffer.from([0x01]),
    ]) {
      expect(outcome(Buffer.concat([der, tail]), keylimeCas)).toBe('ek_certificate_invalid');
    }
    // A second certificate after the first is data, not padding.
    expect(outcome(Buffer.concat([der, der]), keylimeCas)).toBe('ek_certificate_invalid');
  });

  it('refuses a truncated read and bytes that are no SEQUENCE', () => {
    expect(outcome(padded.subarray(0, 600), keylimeCas)).toBe('ek_certificate_invalid');
    expect(outcome(Buffer.alloc(64, 0xff), keylimeCas)).toBe('ek_certificate_invalid');
    expect(outcome(Buffer.alloc(0), keylimeCas)).toBe('ek_certificate_invalid');
  });

  it('arbitrary bytes give a certificate or ek_certificate_invalid, never a crash', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.uint8Array({ maxLength: 64 }).map((tail) => Buffer.concat([der, tail])),
        ),
        (bytes) => {
          try {
            trimNvPadding(bytes);
          } catch (e) {
            return e instanceof EkCertificateInvalidError;
          }
          return true;
        },
      ),
    );
  });
});
