import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unmarshalTpm2bPublic } from '../tpm/marshal/public.js';
import { AK_TEMPLATE_RSA2048, EK_TEMPLATE_RSA2048, withUnique } from '../tpm/templates.js';
import { checkAkPublic } from './ak.js';
import { checkEkPublic, parseCaBundle } from './ek-certificate.js';
import { hasRocaFingerprint } from './roca.js';
import { rocaModulus } from './testing/roca-modulus.js';
import { thrownCode } from '../shared/testing/refusal.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const roca = rocaModulus();

/** Every RSA public key of the real certificates (vendor EK leaves and CA sets). */
function realRsaModuli(): { name: string; n: Buffer }[] {
  const pems: { name: string; pem: string }[] = [];
  const read = (dir: string, filter: (f: string) => boolean): void => {
    for (const f of readdirSync(dir).filter(filter))
      pems.push({ name: f, pem: readFileSync(join(dir, f), 'utf8') });
  };
  const pem = (f: string): boolean => f.endsWith('.pem');
  read(join(FIXTURES, 'vendor-ek/keylime'), pem);
  read(join(FIXTURES, 'vendor-ek/go-tpm-tools/certs'), pem);
  read(join(FIXTURES, 'vendor-ek/tpm-ca-certificates'), pem);
  read(join(FIXTURES, 'tpm-vendor-ca'), pem);
  const certs = pems.flatMap(({ name, pem }) =>
    parseCaBundle(pem).map((cert, i) => ({ name: `${name}#${i}`, cert })),
  );
  certs.push({
    name: 'ek-rsa.der',
    cert: new X509Certificate(readFileSync(join(FIXTURES, 'ek-rsa.der'))),
  });
  return certs.flatMap(({ name, cert }) => {
    const jwk = cert.publicKey.export({ format: 'jwk' });
    return jwk.kty === 'RSA' && typeof jwk.n === 'string'
      ? [{ name, n: Buffer.from(jwk.n, 'base64url') }]
      : [];
  });
}

describe('ROCA fingerprint (CVE-2017-15361)', () => {
  it('flags a modulus built as p, q = k·M + (65537^a mod M)', () => {
    expect(roca.length).toBe(256);
    expect(hasRocaFingerprint(roca)).toBe(true);
    // The structure is what is detected: one bit away is an ordinary number.
    const other = Buffer.from(roca);
    other[255] = (other[255] ?? 0) ^ 0x02;
    expect(hasRocaFingerprint(other)).toBe(false);
  });

  it('flags no real key: vendor EK leaves, vendor CAs, the swtpm EK', () => {
    const moduli = realRsaModuli();
    expect(moduli.length).toBeGreaterThan(100);
    expect(moduli.filter((m) => hasRocaFingerprint(m.n)).map((m) => m.name)).toEqual([]);
    const swtpmEk = unmarshalTpm2bPublic(readFileSync(join(FIXTURES, 'ek-rsa.pub')));
    expect(swtpmEk.type === 0x0001 && hasRocaFingerprint(swtpmEk.unique)).toBe(false);
  });

  it('flags no freshly generated RSA key and no random odd modulus', () => {
    for (let i = 0; i < 3; i++) {
      const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
        format: 'jwk',
      });
      expect(hasRocaFingerprint(Buffer.from(jwk.n ?? '', 'base64url'))).toBe(false);
    }
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 256, maxLength: 256 }), (bytes) => {
        bytes[255] = (bytes[255] ?? 0) | 1;
        return !hasRocaFingerprint(bytes);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a ROCA modulus as AK (ak_key_weak) and as EK (ek_key_weak)', () => {
    expect(thrownCode(() => checkAkPublic(withUnique(AK_TEMPLATE_RSA2048, roca)))).toBe(
      'ak_key_weak',
    );
    expect(thrownCode(() => checkEkPublic(withUnique(EK_TEMPLATE_RSA2048, roca)))).toBe(
      'ek_key_weak',
    );
  });
});
