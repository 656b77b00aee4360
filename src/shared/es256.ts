/**
 * ES256 (ECDSA P-256, r‖s) canonical form, shared by the signer (which emits low-S) and
 * the gateway (which accepts only low-S): (r, s) and (r, n - s) both verify, so a grant
 * would otherwise have two valid token strings.
 */

/** Order of the P-256 group. */
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
export const P256_HALF_N = P256_N >> 1n;

function bigint(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
}

/**
 * Why an ES256 signature (r‖s, 64 bytes) is not canonical, or undefined if it is: r and s in
 * [1, n-1], and s at most n/2 (low-S). A zero value is the "psychic signature" shape
 * (CVE-2022-21449); a high-S twin is a second valid signature for the same grant, which
 * would let anyone mint a distinct token string for one grant.
 */
export function es256SignatureProblem(sig: Uint8Array): string | undefined {
  if (sig.length !== 64) return 'an ES256 signature is 64 bytes';
  const r = bigint(sig.subarray(0, 32));
  const s = bigint(sig.subarray(32));
  if (r === 0n || s === 0n) return 'r or s is zero';
  if (r >= P256_N || s >= P256_N) return 'r or s is not below the group order';
  if (s > P256_HALF_N) return 's is not low (high-S signature)';
  return undefined;
}

/** Maps an r‖s signature to its low-S twin (for signers; verification refuses high-S). */
export function toLowS(sig: Uint8Array): Uint8Array {
  if (sig.length !== 64) throw new TypeError('an ES256 signature is 64 bytes');
  const s = bigint(sig.subarray(32));
  if (s <= P256_HALF_N) return Uint8Array.from(sig);
  const out = new Uint8Array(64);
  out.set(sig.subarray(0, 32), 0);
  out.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32);
  return out;
}
