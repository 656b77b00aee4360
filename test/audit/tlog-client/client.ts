/**
 * An independent C2SP tlog-tiles client (c2sp.org/tlog-tiles, RFC 6962/9162 hashing),
 * written from the specification texts for the test suite: it imports nothing from src/.
 *
 * It trusts only the pinned verifier key and the log's origin. Every tile it uses is
 * authenticated before use: the right-edge tiles of a checkpoint's size must fold into the
 * checkpoint's root, and a full tile's hash (the Merkle Tree Hash of its 256 hashes) must be
 * the entry its parent tile (authenticated first) holds. Proofs are then computed from the
 * tiles and checked against the recursive proof definitions of RFC 9162 §2.1.3.1 and
 * §2.1.4.1, and entry bundles against the level-0 tiles.
 */
import { createHash } from 'node:crypto';
import { TlogClientError, openNote, parseCheckpointText, parseVkey } from './note.js';
import type { Checkpoint, Vkey } from './note.js';

export { TlogClientError } from './note.js';
export type { Checkpoint } from './note.js';

const WIDTH = 256;
const HASH = 32;

/** GET `<prefix>/<path>`: the status and the body's bytes. */
export type Fetcher = (path: string) => Promise<{ status: number; body: Buffer }>;

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
export const leafHashOf = (entry: Buffer): Buffer => sha256(Buffer.from([0]), entry);
const nodeHash = (l: Buffer, r: Buffer): Buffer => sha256(Buffer.from([1]), l, r);

/** `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (W = 256: the full tile). */
export function tilePathOf(level: number | 'entries', index: number, width = WIDTH): string {
  let n = index;
  let digits = `${n % 1000}`.padStart(3, '0');
  n = Math.floor(n / 1000);
  while (n > 0) {
    digits = `x${`${n % 1000}`.padStart(3, '0')}/${digits}`;
    n = Math.floor(n / 1000);
  }
  return `tile/${level}/${digits}${width === WIDTH ? '' : `.p/${width}`}`;
}

/** Largest power of two strictly below n (n >= 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** RFC 6962 MTH over a list of subtree hashes (a tile's, or part of it). */
function mth(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 1) return hashes[0] ?? Buffer.alloc(0);
  const k = split(hashes.length);
  return nodeHash(mth(hashes.slice(0, k)), mth(hashes.slice(k)));
}

function splitHashes(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += HASH) out.push(bytes.subarray(i, i + HASH));
  return out;
}

/*
 * The two verifiers below follow the recursive definitions of the proofs (RFC 9162
 * §2.1.3.1 PATH and §2.1.4.1 PROOF/SUBPROOF): each step takes the proof's last node, the
 * sibling of the split at k, and recurses into the side that holds what is proved. The
 * appliance and its monitor verify with the iterative algorithms of §2.1.3.2 and §2.1.4.2;
 * a client that reads the same text another way is a check on both.
 */

/** RFC 9162 §2.1.3.1: the root PATH(m, D[n]) leads to from `leaf`, or undefined. */
function pathRoot(m: number, n: number, leaf: Buffer, path: readonly Buffer[]): Buffer | undefined {
  if (n === 1) return path.length === 0 ? leaf : undefined;
  const sibling = path.at(-1);
  if (sibling === undefined) return undefined;
  const k = split(n);
  const below = path.slice(0, -1);
  if (m < k) {
    const left = pathRoot(m, k, leaf, below);
    return left && nodeHash(left, sibling);
  }
  const right = pathRoot(m - k, n - k, leaf, below);
  return right && nodeHash(sibling, right);
}

/** RFC 9162 §2.1.3.2's question: is `proof` the path of `leaf` at `index` in `root`? */
export function verifyInclusion(
  leaf: Buffer,
  index: number,
  size: number,
  proof: readonly Buffer[],
  root: Buffer,
): boolean {
  if (!(index >= 0 && index < size)) return false;
  return pathRoot(index, size, leaf, proof)?.equals(root) ?? false;
}

/**
 * RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), read backwards: the roots of D[0:m] and of D[n]
 * the proof leads to. `first` is MTH(D[0:m]), the one node a complete subtree (b) omits.
 */
function subproofRoots(
  m: number,
  n: number,
  complete: boolean,
  first: Buffer,
  proof: readonly Buffer[],
): { old: Buffer; new: Buffer } | undefined {
  if (m === n) {
    if (complete) return proof.length === 0 ? { old: first, new: first } : undefined;
    const [only, ...more] = proof;
    return only !== undefined && more.length === 0 ? { old: only, new: only } : undefined;
  }
  const sibling = proof.at(-1);
  if (sibling === undefined) return undefined;
  const k = split(n);
  const below = proof.slice(0, -1);
  if (m <= k) {
    const left = subproofRoots(m, k, complete, first, below);
    return left && { old: left.old, new: nodeHash(left.new, sibling) };
  }
  const right = subproofRoots(m - k, n - k, false, first, below);
  return right && { old: nodeHash(sibling, right.old), new: nodeHash(sibling, right.new) };
}

/** RFC 9162 §2.1.4.2's question: does `proof` show size1's tree is a prefix of size2's? */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Buffer[],
  root1: Buffer,
  root2: Buffer,
): boolean {
  if (size1 === size2) return proof.length === 0 && root1.equals(root2);
  if (!(size1 >= 1 && size1 < size2)) return false;
  const roots = subproofRoots(size1, size2, true, root1, proof);
  return roots !== undefined && roots.old.equals(root1) && roots.new.equals(root2);
}

export class TlogClient {
  readonly #key: Vkey;
  /** Authenticated tiles of one tree size: `L/N` -> its hashes (each a subtree's MTH). */
  #tiles = new Map<string, Buffer[]>();
  #treeSize = -1;

  readonly #fetcher: Fetcher;
  readonly #origin: string;

  constructor(fetcher: Fetcher, vkey: string, origin: string) {
    this.#fetcher = fetcher;
    this.#origin = origin;
    this.#key = parseVkey(vkey);
  }

  /** The signed note as served, verified with the pinned key, and its checkpoint. */
  async checkpoint(): Promise<{ note: string; checkpoint: Checkpoint }> {
    const res = await this.#fetcher('checkpoint');
    if (res.status !== 200) throw new TlogClientError('fetch', `checkpoint: HTTP ${res.status}`);
    const note = res.body.toString('utf8');
    return { note, checkpoint: this.open(note) };
  }

  /** A note kept earlier: verified again (never trusted as stored). */
  open(note: string): Checkpoint {
    return parseCheckpointText(openNote(note, this.#key), this.#origin);
  }

  async #fetchTile(level: number | 'entries', index: number, width: number) {
    const path = tilePathOf(level, index, width);
    const res = await this.#fetcher(path);
    if (res.status !== 200) throw new TlogClientError('fetch', `${path}: HTTP ${res.status}`);
    return { path, body: res.body };
  }

  /** Hashes of tile (L, N) in a tree of `size` (its width there), not yet authenticated. */
  async #rawTile(size: number, level: number, index: number): Promise<Buffer[]> {
    const count = Math.floor(size / WIDTH ** level);
    const width = Math.min(WIDTH, count - index * WIDTH);
    if (width <= 0) throw new TlogClientError('range', `tile ${level}/${index} beyond ${size}`);
    const { path, body } = await this.#fetchTile(level, index, width);
    if (body.length !== width * HASH) {
      throw new TlogClientError('tile_size', `${path}: ${body.length} bytes, want ${width * HASH}`);
    }
    return splitHashes(body);
  }

  /**
   * Authenticate the right edge of checkpoint `cp`: its partial tiles, level by level, must
   * fold into the checkpoint's root. Then full tiles are authenticated against them.
   */
  async useCheckpoint(cp: Checkpoint): Promise<void> {
    this.#tiles = new Map();
    this.#treeSize = cp.size;
    const subtrees: Buffer[] = [];
    const edges: { level: number; index: number; hashes: Buffer[] }[] = [];
    for (let level = 0; WIDTH ** level <= cp.size; level++) {
      const count = Math.floor(cp.size / WIDTH ** level);
      const width = count % WIDTH;
      if (width === 0) continue;
      const index = Math.floor(count / WIDTH);
      edges.push({ level, index, hashes: await this.#rawTile(cp.size, level, index) });
    }
    // Left to right: the highest level's hashes first; within a tile, by the bits of W.
    for (const edge of [...edges].reverse()) {
      let at = 0;
      for (let bit = 7; bit >= 0; bit--) {
        if ((edge.hashes.length & (1 << bit)) === 0) continue;
        subtrees.push(mth(edge.hashes.slice(at, at + (1 << bit))));
        at += 1 << bit;
      }
    }
    const root = cp.size === 0 ? sha256() : subtrees.reduceRight((acc, h) => nodeHash(h, acc));
    if (!root.equals(cp.root)) {
      const where = edges.map((e) => tilePathOf(e.level, e.index, e.hashes.length)).join(', ');
      throw new TlogClientError('tile_hash', `edge tiles ${where} do not make the root`);
    }
    for (const e of edges) this.#tiles.set(`${e.level}/${e.index}`, e.hashes);
  }

  /** The authenticated hashes of tile (L, N) of the current tree. */
  async tile(level: number, index: number): Promise<Buffer[]> {
    const known = this.#tiles.get(`${level}/${index}`);
    if (known !== undefined) return known;
    const hashes = await this.#rawTile(this.#treeSize, level, index);
    if (hashes.length !== WIDTH) throw new TlogClientError('range', 'edge tile not authenticated');
    const parent = await this.tile(level + 1, Math.floor(index / WIDTH));
    const expected = parent[index % WIDTH];
    if (expected === undefined || !mth(hashes).equals(expected)) {
      throw new TlogClientError(
        'tile_hash',
        `${tilePathOf(level, index)} does not hash to its entry in ${tilePathOf(level + 1, Math.floor(index / WIDTH))}`,
      );
    }
    this.#tiles.set(`${level}/${index}`, hashes);
    return hashes;
  }

  /** MTH(D[lo:hi]) of the current tree from authenticated tiles. */
  async subtree(lo: number, hi: number): Promise<Buffer> {
    const n = hi - lo;
    if ((n & (n - 1)) === 0 && lo % n === 0) {
      // A perfect subtree of 2^h leaves: inside one tile at level floor(h / 8).
      const h = Math.log2(n);
      const level = Math.floor(h / 8);
      const span = WIDTH ** level;
      const first = lo / span;
      const hashes = await this.tile(level, Math.floor(first / WIDTH));
      const at = first % WIDTH;
      return mth(hashes.slice(at, at + 2 ** (h % 8)));
    }
    const k = split(n);
    return nodeHash(await this.subtree(lo, lo + k), await this.subtree(lo + k, hi));
  }

  /** RFC 9162 PATH(index, D[0:size]) computed from the tiles, leaf to root. */
  async inclusionProof(index: number, size = this.#treeSize): Promise<Buffer[]> {
    const out: Buffer[] = [];
    const walk = async (m: number, lo: number, hi: number): Promise<void> => {
      if (hi - lo <= 1) return;
      const k = split(hi - lo);
      if (m < k) {
        await walk(m, lo, lo + k);
        out.push(await this.subtree(lo + k, hi));
      } else {
        await walk(m - k, lo + k, hi);
        out.push(await this.subtree(lo, lo + k));
      }
    };
    await walk(index, 0, size);
    return out;
  }

  /** RFC 9162 PROOF(m, D[0:size]) computed from the tiles. */
  async consistencyProof(m: number, size = this.#treeSize): Promise<Buffer[]> {
    const out: Buffer[] = [];
    const sub = async (mm: number, lo: number, hi: number, complete: boolean): Promise<void> => {
      const n = hi - lo;
      if (mm === n) {
        if (!complete) out.push(await this.subtree(lo, hi));
        return;
      }
      const k = split(n);
      if (mm <= k) {
        await sub(mm, lo, lo + k, complete);
        out.push(await this.subtree(lo + k, hi));
      } else {
        await sub(mm - k, lo + k, hi, false);
        out.push(await this.subtree(lo, lo + k));
      }
    };
    if (m < size) await sub(m, 0, size, true);
    return out;
  }

  /** Leaf `index` from its level-0 tile. */
  async leafHash(index: number): Promise<Buffer> {
    const hashes = await this.tile(0, Math.floor(index / WIDTH));
    const leaf = hashes[index % WIDTH];
    if (leaf === undefined) throw new TlogClientError('range', `no leaf ${index}`);
    return leaf;
  }

  /**
   * Entry bundle N of the current tree: its entries, each checked to hash (RFC 6962 leaf
   * hash) to the corresponding hash of the authenticated level-0 tile.
   */
  async entryBundle(index: number): Promise<Buffer[]> {
    const hashes = await this.tile(0, index);
    const { path, body } = await this.#fetchTile('entries', index, hashes.length);
    const entries: Buffer[] = [];
    let at = 0;
    while (at < body.length) {
      if (at + 2 > body.length) throw new TlogClientError('bundle_format', `${path}: truncated`);
      const length = body.readUInt16BE(at);
      if (at + 2 + length > body.length) {
        throw new TlogClientError('bundle_format', `${path}: entry ${entries.length} truncated`);
      }
      entries.push(body.subarray(at + 2, at + 2 + length));
      at += 2 + length;
    }
    if (entries.length !== hashes.length) {
      throw new TlogClientError('bundle_format', `${path}: ${entries.length} entries`);
    }
    entries.forEach((e, i) => {
      if (!leafHashOf(e).equals(hashes[i] ?? Buffer.alloc(0))) {
        throw new TlogClientError(
          'entry_hash',
          `${path}: entry ${index * WIDTH + i} does not hash to its leaf`,
        );
      }
    });
    return entries;
  }
}
