/**
 * Verification of an RFC 9162 §2.1.4 consistency proof, for a client that holds two tree
 * heads and nothing else (the log monitor, `grantor audit watch`). The appliance computes
 * proofs in merkle.ts; this is the other side, written from §2.1.4.2 and checked against
 * the appliance's proofs for every pair of sizes (consistency.test.ts).
 */
import { nodeHash } from './merkle.js';

/**
 * True when `proof` shows that the tree of size `first` with root `firstRoot` is a prefix of
 * the tree of size `second` with root `secondRoot`. Sizes must be 1 <= first <= second (the
 * empty tree is a prefix of every tree and needs no proof); equal sizes need an empty proof
 * and equal roots.
 */
export function verifyConsistency(
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second)) return false;
  if (first < 1 || first > second) return false;
  if (proof.some((p) => p.length !== 32) || firstRoot.length !== 32 || secondRoot.length !== 32) {
    return false;
  }
  if (first === second) {
    return proof.length === 0 && Buffer.from(firstRoot).equals(Buffer.from(secondRoot));
  }
  // Step 1: a first tree that is a full subtree is its own first node of the path.
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : [...proof];
  const [head, ...rest] = path;
  if (head === undefined) return false;
  // Steps 2-3: skip the right-edge levels the first tree shares with the second.
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(head);
  let sr: Buffer = Buffer.from(head);
  // Step 5: fold the rest of the path.
  for (const c of rest) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 6.
  return sn === 0 && fr.equals(Buffer.from(firstRoot)) && sr.equals(Buffer.from(secondRoot));
}

/** Without 32-bit bit operations: sizes go up to 2^53. */
function isPowerOfTwo(n: number): boolean {
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
}
