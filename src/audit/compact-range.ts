/**
 * The Merkle arithmetic an evidence bundle needs without the whole tree in memory: a
 * compact range (the roots of the perfect subtrees covering leaves [0, end), at most one
 * per bit of `end`) and the frontier an RFC 9162 inclusion path of leaf `end` carries; the
 * consistency check is consistency.ts's. Sizes are plain numbers (≤ 2^53): no 32-bit bit
 * operators anywhere.
 */
import { EMPTY_ROOT, HASH_SIZE, inclusionSiblings, nodeHash } from './merkle.js';

/** The sizes of the perfect subtrees covering [0, n), largest (leftmost) first. */
export function frontierSizes(n: number): number[] {
  const sizes: number[] = [];
  let p = 1;
  while (p * 2 <= n) p *= 2;
  let rest = n;
  for (; p >= 1 && rest > 0; p /= 2) {
    if (rest >= p) {
      sizes.push(p);
      rest -= p;
    }
  }
  return sizes;
}

/**
 * The frontier of leaf `index` (the roots of the perfect subtrees covering [0, index),
 * leftmost first) from its RFC 9162 inclusion path in a tree of `size` leaves: the path's
 * left siblings. Throws RangeError when the path has not the length the sizes imply.
 */
export function frontierFromInclusion(
  index: number,
  size: number,
  path: readonly Buffer[],
): Buffer[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`leaf ${index} is not in a tree of size ${size}`);
  }
  const left = inclusionSiblings(index, size).map((s) => s.left);
  if (left.length !== path.length) throw new RangeError('inclusion path of the wrong length');
  // The path runs leaf to root: the deepest (smallest, rightmost) left sibling comes first.
  return path.filter((_, i) => left[i] === true).reverse();
}

/** Leaves [0, end) as the roots of their perfect subtrees; grows by appending leaves. */
export class CompactRange {
  readonly #stack: { size: number; hash: Buffer }[] = [];
  #count = 0;

  /** From a frontier (leftmost first); RangeError when it does not fit `end`. */
  static fromFrontier(end: number, hashes: readonly Buffer[]): CompactRange {
    const sizes = frontierSizes(end);
    if (sizes.length !== hashes.length) {
      throw new RangeError(`a frontier of ${end} leaves has ${sizes.length} hashes`);
    }
    const range = new CompactRange();
    sizes.forEach((size, i) => {
      const hash = hashes[i];
      if (hash?.length !== HASH_SIZE) throw new RangeError('frontier hash must be 32 bytes');
      range.#stack.push({ size, hash });
    });
    range.#count = end;
    return range;
  }

  get end(): number {
    return this.#count;
  }

  appendLeaf(leaf: Buffer): void {
    let top = { size: 1, hash: leaf };
    for (;;) {
      const last = this.#stack.at(-1);
      if (last?.size !== top.size) break;
      this.#stack.pop();
      top = { size: top.size * 2, hash: nodeHash(last.hash, top.hash) };
    }
    this.#stack.push(top);
    this.#count += 1;
  }

  /** MTH(D[0:end]). */
  root(): Buffer {
    let acc: Buffer | undefined;
    for (let i = this.#stack.length - 1; i >= 0; i--) {
      const node = this.#stack[i];
      if (node === undefined) continue;
      acc = acc === undefined ? node.hash : nodeHash(node.hash, acc);
    }
    return acc ?? Buffer.from(EMPTY_ROOT);
  }
}
