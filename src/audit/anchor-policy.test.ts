import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unmarshalTpmtSignature } from '../tpm/marshal/signature.js';
import type { AnchorWriteKey } from './anchor-key.port.js';
import {
  anchorKeyName,
  anchorPolicySigner,
  anchorWritePolicy,
  policySignedDigest,
} from './anchor-policy.js';

function point(): Buffer {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
    format: 'jwk',
  });
  return Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x ?? '', 'base64url'),
    Buffer.from(jwk.y ?? '', 'base64url'),
  ]);
}

const keyReturning = (sig: Buffer): AnchorWriteKey => ({
  publicPoint: () => Promise.resolve(point()),
  signDigests: (digests) => Promise.resolve(digests.map(() => sig)),
  close: () => Promise.resolve(),
});

describe('the anchor write policy', () => {
  it('is PolicySigned over the key name, with an empty policyRef', () => {
    const p = point();
    const step = createHash('sha256')
      .update(Buffer.alloc(32))
      .update(Buffer.from('00000160', 'hex'))
      .update(anchorKeyName(p))
      .digest();
    expect(anchorWritePolicy(p)).toEqual(createHash('sha256').update(step).digest());
    expect(anchorKeyName(p).subarray(0, 2).toString('hex')).toBe('000b');
    // Another key, another policy: a redefinition with it changes the NV names.
    expect(anchorWritePolicy(point()).equals(anchorWritePolicy(p))).toBe(false);
  });

  it('signs SHA-256(nonceTPM ‖ expiration 0 ‖ cpHashA), and only with a cpHashA', () => {
    const nonce = Buffer.alloc(32, 7);
    const cpHash = Buffer.alloc(32, 9);
    expect(policySignedDigest(nonce, cpHash)).toEqual(
      createHash('sha256')
        .update(Buffer.concat([nonce, Buffer.alloc(4), cpHash]))
        .digest(),
    );
    // An empty cpHashA would authorise any command in the session.
    expect(() => policySignedDigest(nonce, Buffer.alloc(0))).toThrow(RangeError);
  });

  it.each([
    ['a compressed point', Buffer.concat([Buffer.from([2]), Buffer.alloc(32, 1)])],
    ['a point without its 0x04 prefix', Buffer.alloc(65, 1)],
    ['a P-384 point', Buffer.concat([Buffer.from([4]), Buffer.alloc(96, 1)])],
  ])('refuses %s', (_what, p) => {
    expect(() => anchorWritePolicy(p)).toThrow(RangeError);
  });

  it('wraps r ‖ s as an ECDSA/SHA-256 TPMT_SIGNATURE and refuses anything else', async () => {
    const rs = Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
    const signer = anchorPolicySigner(keyReturning(rs), point());
    const request = { nonceTpm: Buffer.alloc(32), cpHashA: Buffer.alloc(32) };
    const sigs = await signer.sign([request, request]);
    expect(sigs).toHaveLength(2);
    for (const sig of sigs) {
      expect(unmarshalTpmtSignature(sig)).toMatchObject({ sigAlg: 0x18, hash: 0x0b });
    }
    const short = anchorPolicySigner(keyReturning(Buffer.alloc(63)), point());
    await expect(short.sign([request])).rejects.toThrow(RangeError);
  });
});
