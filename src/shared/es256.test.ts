/**
 * Low-S in one place: the keys service maps every ES256 signature through `toLowS`, and
 * the gateway refuses anything else (`es256SignatureProblem`).
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { P256_HALF_N, es256SignatureProblem, toLowS } from './es256.js';

describe('toLowS', () => {
  const sOf = (sig: Uint8Array): bigint =>
    BigInt(`0x${Buffer.from(sig).subarray(32).toString('hex')}`);

  it('turns a high-S ES256 signature into its low-S twin, which still verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    let seenHigh = false;
    for (let i = 0; i < 64 && !seenHigh; i++) {
      const input = Buffer.from(`input ${String(i)}`);
      const sig = sign('sha256', input, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const fixed = toLowS(sig);
      expect(sOf(fixed) <= P256_HALF_N).toBe(true);
      expect(es256SignatureProblem(fixed)).toBeUndefined();
      expect(verify('sha256', input, { key: publicKey, dsaEncoding: 'ieee-p1363' }, fixed)).toBe(
        true,
      );
      if (sOf(sig) > P256_HALF_N) {
        seenHigh = true;
        expect(Buffer.from(fixed).equals(sig)).toBe(false);
        expect(es256SignatureProblem(sig)).toBe('s is not low (high-S signature)');
      } else {
        expect(Buffer.from(fixed).equals(sig)).toBe(true);
      }
    }
    expect(seenHigh).toBe(true);
  });

  it('refuses a signature that is not 64 bytes', () => {
    expect(() => toLowS(new Uint8Array(63))).toThrow(TypeError);
  });
});
