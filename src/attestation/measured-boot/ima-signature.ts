/**
 * IMA file signatures (ima-sig template, EVM_IMA_XATTR_DIGSIG version 2): header type 0x03,
 * version 2, hash algorithm (the kernel's enum), 4-byte key id, big-endian signature size,
 * signature. The key signs the file digest itself: RSA PKCS#1 v1.5 over DigestInfo(digest),
 * ECDSA over the digest as the message hash. node:crypto cannot verify ECDSA over a given
 * hash, so that verification is done here with BigInt arithmetic (public data only: no
 * constant-time concern).
 */
import { constants, publicDecrypt, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { ImaKey } from './policy.js';

/** Linux `enum hash_algo` values IMA signatures use, with their DigestInfo prefixes. */
const HASHES: Record<number, { name: string; size: number; digestInfo: string }> = {
  2: { name: 'sha1', size: 20, digestInfo: '3021300906052b0e03021a05000414' },
  4: { name: 'sha256', size: 32, digestInfo: '3031300d060960864801650304020105000420' },
  5: { name: 'sha384', size: 48, digestInfo: '3041300d060960864801650304020205000430' },
  6: { name: 'sha512', size: 64, digestInfo: '3051300d060960864801650304020305000440' },
};

export type ImaSignatureCheck = 'valid' | 'invalid' | 'unknown_key';

/** Check an ima-sig signature field over `digest` (the d-ng digest) with the listed keys. */
export function checkImaSignature(
  sig: Buffer,
  digestAlg: string,
  digest: Buffer,
  keys: readonly ImaKey[],
): ImaSignatureCheck {
  if (sig.length < 9 || sig[0] !== 0x03 || sig[1] !== 2) return 'invalid';
  const hash = HASHES[sig[2] ?? 0];
  if (hash === undefined || hash.name !== digestAlg || hash.size !== digest.length)
    return 'invalid';
  const keyId = sig.subarray(3, 7).toString('hex');
  const size = sig.readUInt16BE(7);
  if (size !== sig.length - 9) return 'invalid';
  const key = keys.find((k) => k.keyId === keyId);
  if (key === undefined) return 'unknown_key';
  const body = sig.subarray(9);
  return verifyDigest(key.key, hash.digestInfo, digest, body) ? 'valid' : 'invalid';
}

function verifyDigest(key: KeyObject, digestInfo: string, digest: Buffer, sig: Buffer): boolean {
  if (key.asymmetricKeyType === 'rsa') {
    let decoded: Buffer;
    try {
      decoded = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, sig);
    } catch {
      return false;
    }
    // The whole decoded block must be DigestInfo(digest): no room for forged trailing data.
    const expected = Buffer.concat([Buffer.from(digestInfo, 'hex'), digest]);
    return decoded.length === expected.length && timingSafeEqual(decoded, expected);
  }
  if (key.asymmetricKeyType === 'ec') return ecdsaVerify(key, digest, sig);
  return false;
}

interface Curve {
  readonly p: bigint;
  readonly a: bigint;
  readonly n: bigint;
  readonly gx: bigint;
  readonly gy: bigint;
}

const CURVES: Record<string, Curve> = {
  secp256k1: {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn,
    a: 0n,
    n: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
    gx: 0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
    gy: 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
  },
  'P-256': {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    a: 0xffffffff00000001000000000000000000000000fffffffffffffffffffffffcn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
  },
};

type Point = { x: bigint; y: bigint } | null;

const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;

function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function add(c: Curve, P: Point, Q: Point): Point {
  if (P === null) return Q;
  if (Q === null) return P;
  if (P.x === Q.x && mod(P.y + Q.y, c.p) === 0n) return null;
  const l =
    P.x === Q.x && P.y === Q.y
      ? mod((3n * P.x * P.x + c.a) * inverse(2n * P.y, c.p), c.p)
      : mod((Q.y - P.y) * inverse(Q.x - P.x, c.p), c.p);
  const x = mod(l * l - P.x - Q.x, c.p);
  return { x, y: mod(l * (P.x - x) - P.y, c.p) };
}

function multiply(c: Curve, k: bigint, P: Point): Point {
  let result: Point = null;
  let addend = P;
  for (let e = k; e > 0n; e >>= 1n) {
    if ((e & 1n) === 1n) result = add(c, result, addend);
    addend = add(c, addend, addend);
  }
  return result;
}

/** DER ECDSA-Sig-Value: SEQUENCE { INTEGER r, INTEGER s }, short lengths only. */
function derSignature(sig: Buffer): { r: bigint; s: bigint } | undefined {
  if (sig.length < 8 || sig[0] !== 0x30 || sig[1] !== sig.length - 2) return undefined;
  const ints: bigint[] = [];
  let o = 2;
  for (let i = 0; i < 2; i++) {
    const len = sig[o + 1] ?? 0;
    if (sig[o] !== 0x02 || len === 0 || len > 0x7f || o + 2 + len > sig.length) return undefined;
    ints.push(BigInt(`0x${sig.subarray(o + 2, o + 2 + len).toString('hex')}`));
    o += 2 + len;
  }
  const [r, s] = ints;
  return o === sig.length && r !== undefined && s !== undefined ? { r, s } : undefined;
}

function ecdsaVerify(key: KeyObject, digest: Buffer, sig: Buffer): boolean {
  const jwk = key.export({ format: 'jwk' });
  const c = jwk.crv === undefined ? undefined : CURVES[jwk.crv];
  const rs = derSignature(sig);
  if (c === undefined || rs === undefined || jwk.x === undefined || jwk.y === undefined)
    return false;
  const { r, s } = rs;
  if (r < 1n || r >= c.n || s < 1n || s >= c.n) return false;
  const Q = {
    x: BigInt(`0x${Buffer.from(jwk.x, 'base64url').toString('hex')}`),
    y: BigInt(`0x${Buffer.from(jwk.y, 'base64url').toString('hex')}`),
  };
  const nBits = c.n.toString(2).length;
  let e = BigInt(`0x${digest.toString('hex') || '0'}`);
  if (digest.length * 8 > nBits) e >>= BigInt(digest.length * 8 - nBits);
  const w = inverse(s, c.n);
  const X = add(
    c,
    multiply(c, mod(e * w, c.n), { x: c.gx, y: c.gy }),
    multiply(c, mod(r * w, c.n), Q),
  );
  return X !== null && mod(X.x, c.n) === r;
}
