/**
 * A ROCA-structured RSA modulus for tests (CVE-2017-15361): n = p·q with both primes of the
 * vulnerable form k·M + (65537^a mod M), M the product of the first 126 primes (the M of
 * 2048-bit keys in the paper). Built from the definition, fresh on each call.
 */
import { checkPrimeSync, randomBytes } from 'node:crypto';

function firstPrimes(count: number): bigint[] {
  const out: bigint[] = [];
  for (let n = 2n; out.length < count; n++) if (out.every((p) => n % p !== 0n)) out.push(n);
  return out;
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
  }
  return result;
}

const randomBig = (bytes: number): bigint => BigInt(`0x${randomBytes(bytes).toString('hex')}`);

/** Big-endian bytes of a 2048-bit modulus with the ROCA structure. */
export function rocaModulus(): Buffer {
  const m = firstPrimes(126).reduce((a, b) => a * b, 1n);
  const kBits = 1024 - m.toString(2).length;
  const prime = (): bigint => {
    for (;;) {
      const k = (randomBig(8) % (1n << BigInt(kBits - 1))) | (1n << BigInt(kBits - 1));
      const p = k * m + modPow(65537n, randomBig(32), m);
      if (checkPrimeSync(p)) return p;
    }
  };
  for (;;) {
    const n = prime() * prime();
    const hex = n.toString(16);
    if (hex.length === 512) return Buffer.from(hex, 'hex');
  }
}
