/** The grant token's canonical signature (claims.ts). */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { lowS } from './claims.js';

describe('lowS', () => {
  const HALF = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n;
  const sOf = (jws: string): bigint =>
    BigInt(
      `0x${Buffer.from(jws.split('.')[2] ?? '', 'base64url')
        .subarray(32)
        .toString('hex')}`,
    );

  it('turns a high-S ES256 signature into its low-S twin, which still verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    let seenHigh = false;
    for (let i = 0; i < 64 && !seenHigh; i++) {
      const input = `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(String(i)).toString('base64url')}`;
      const sig = sign('sha256', Buffer.from(input), {
        key: privateKey,
        dsaEncoding: 'ieee-p1363',
      });
      const jws = `${input}.${sig.toString('base64url')}`;
      const fixed = lowS(jws);
      expect(sOf(fixed) <= HALF).toBe(true);
      const fixedSig = Buffer.from(fixed.split('.')[2] ?? '', 'base64url');
      expect(
        verify(
          'sha256',
          Buffer.from(input),
          { key: publicKey, dsaEncoding: 'ieee-p1363' },
          fixedSig,
        ),
      ).toBe(true);
      if (sOf(jws) > HALF) {
        seenHigh = true;
        expect(fixed).not.toBe(jws);
      } else {
        expect(fixed).toBe(jws);
      }
    }
    expect(seenHigh).toBe(true);
  });

  it('refuses a malformed signature as hsm_unavailable', () => {
    expect(() => lowS('a.b.c')).toThrow(expect.objectContaining({ code: 'hsm_unavailable' }));
  });
});
