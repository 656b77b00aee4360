import { describe, expect, it } from 'vitest';
import { makeCa } from '../operators/testing/certs.js';
import { MAX_EK_CA_CERTIFICATES, validateEkCaBundle } from './ek-certificate.js';

const DAY = 86_400_000;
const reasonOf = (pem: string, now = new Date()): unknown => {
  try {
    validateEkCaBundle(pem, now);
  } catch (e) {
    return [
      (e as { code?: string }).code,
      (e as { details?: { reason?: string } }).details?.reason,
    ];
  }
  return 'accepted';
};

describe('validateEkCaBundle', () => {
  it('accepts CA certificates valid now, with text between them', async () => {
    const [a, b] = [await makeCa('a'), await makeCa('b')];
    const certs = validateEkCaBundle(`# vendor A\n${a.pem}\n# vendor B\n${b.pem}`, new Date());
    expect(certs.map((c) => c.subject)).toEqual(['CN=a', 'CN=b']);
  });

  it('refuses a CA that is not valid yet, and more certificates than the cap', async () => {
    const later = await makeCa('later', new Date(Date.now() + 10 * DAY));
    expect(reasonOf(later.pem)).toEqual(['ek_ca_bundle_invalid', 'not_yet_valid']);
    const one = await makeCa('one');
    expect(reasonOf(one.pem.repeat(MAX_EK_CA_CERTIFICATES + 1))).toEqual([
      'ek_ca_bundle_invalid',
      'too_many',
    ]);
    // The same certificate judged at a time past its validity.
    expect(reasonOf(one.pem, new Date(Date.now() + 60 * DAY))).toEqual([
      'ek_ca_bundle_invalid',
      'expired',
    ]);
  });
});
