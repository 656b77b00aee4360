import { generateKeyPairSync, sign, verify } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBase64url, es256SignatureProblem, toLowS } from './encoding.js';
import { parametersDigest } from './digest.js';

describe('decodeBase64url', () => {
  it('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(decodeBase64url(Buffer.from(bytes).toString('base64url'))).toEqual(
          Buffer.from(bytes),
        );
      }),
    );
  });

  it.each(['AA==', 'A', 'AB', 'A+B/', 'AA AA', 'AA\n', 'QR'])('refuses %j', (text) => {
    expect(decodeBase64url(text)).toBeUndefined();
  });
});

describe('ES256 signatures', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  it('toLowS yields a canonical signature that still verifies', () => {
    for (let i = 0; i < 20; i++) {
      const data = Buffer.from(`message ${i}`);
      const sig = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const low = toLowS(sig);
      expect(es256SignatureProblem(low)).toBeUndefined();
      expect(verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, low)).toBe(true);
    }
  });

  it('finds the problem in zero, out-of-range and wrong-length signatures', () => {
    expect(es256SignatureProblem(new Uint8Array(64))).toMatch(/zero/);
    expect(es256SignatureProblem(new Uint8Array(64).fill(0xff))).toMatch(/order/);
    expect(es256SignatureProblem(new Uint8Array(63))).toMatch(/64 bytes/);
    const high = new Uint8Array(64).fill(1);
    high.set(Buffer.from('80' + '00'.repeat(31), 'hex'), 32);
    expect(es256SignatureProblem(high)).toMatch(/high-S/);
  });
});

describe('parametersDigest', () => {
  it('is SHA-256 over RFC 8785 canonical JSON (key order does not matter)', () => {
    // sha256 of the text {"a":1,"b":[true,"x"]}
    const expected = '63e8063d9dc6f0fd5a24b4706818a165fd57c3531b74466cf5dea62bff09b0b6';
    expect(parametersDigest({ b: [true, 'x'], a: 1 })).toBe(expected);
    expect(parametersDigest({ a: 1.0, b: [true, 'x'] })).toBe(expected);
    expect(parametersDigest({ a: 2, b: [true, 'x'] })).not.toBe(expected);
  });
});
