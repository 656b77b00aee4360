/**
 * The audit tree with its levels on disk as C2SP tlog-tiles (tiles.ts) and only its right
 * edge in memory: one partial tile per tile level (under 256 hashes each), so memory is
 * O(log n) whatever the log's size. Appending leaves completes tiles; `writes()` hands the
 * tiles a batch changed to the caller, which stores them in the same synced write as the
 * batch's entries, and `settle()` forgets them once durable.
 *
 * Roots and proofs for any size up to the tree's are computed from the tiles. A full tile
 * read back from the store is trusted only once its root equals the hash its parent tile
 * holds, up to the right edge kept in memory (which start-up checked against the TPM
 * anchor): a tile edited on disk is noticed when read, never served.
 *
 * Verified full tiles are kept in one bounded LRU per tile level (CACHE_TILES_PER_LEVEL), so
 * the many level-0 tiles that random proofs read cannot evict the few upper tiles that every
 * proof needs; the bound (docs/audit.md "Tiles") holds whatever the log's size.
 */
import { AuditRangeError } from './errors.js';
import {
  EMPTY_ROOT,
  HASH_SIZE,
  consistencySubtrees,
  inclusionSiblings,
  nodeHash,
  splitPoint,
} from './merkle.js';
import {
  TILE_HEIGHT,
  TILE_WIDTH,
  edgeTile,
  fullTileRoot,
  levelCount,
  tileInnerLevels,
  tileLevels,
  type TileData,
  type TileId,
} from './tiles.js';

/** Where stored tiles are read from (unchecked bytes; undefined when absent). */
export interface TileSource {
  readTile(level: number, index: number): Promise<Buffer | undefined>;
}

/** The right edge of a tree: its size and, per tile level, the partial tile's hashes. */
export interface Frontier {
  readonly size: number;
  readonly edges: readonly Buffer[];
}

export type TileProblem = 'missing' | 'short' | 'malformed' | 'root_mismatch';

/** A stored tile that is absent or does not agree with the tree. */
export class TileMismatchError extends Error {
  constructor(
    readonly tile: TileId,
    readonly problem: TileProblem,
  ) {
    super(`audit tile ${tile.level}/${tile.index} is ${problem.replace('_', ' ')}`);
    this.name = 'TileMismatchError';
  }
}

const TILE_BYTES = TILE_WIDTH * HASH_SIZE;
/**
 * Verified full tiles kept per tile level (about 16 KB each with their inner levels): 256
 * level-1 tiles cover 16.7 million entries, so below that size every upper tile stays warm.
 */
export const CACHE_TILES_PER_LEVEL = 256;
const key = (level: number, index: number): string => `${level}/${index}`;

function at(buf: Buffer, i: number): Buffer {
  return Buffer.from(buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
}

export class TiledTree {
  #treeSize = 0;
  /** Per tile level: the edge tile's buffer (capacity 256 hashes), width and index. */
  #edges: Buffer[] = [];
  #widths: number[] = [];
  #indices: number[] = [];
  /** Full tiles completed since the last settle() (not yet durable: read from here). */
  #completed = new Map<string, TileData>();
  #dirty = new Set<number>();
  #edgeMemo = new Map<number, { index: number; width: number; levels: Buffer[] }>();
  /** Per tile level: verified full tiles' inner levels by index, least recently used first. */
  readonly #caches: Map<number, Buffer[]>[] = [];

  readonly #source: TileSource;

  constructor(source: TileSource, frontier: Frontier = { size: 0, edges: [] }) {
    this.#source = source;
    this.reset(frontier);
  }

  /** The tree of `size` leaves from the stored right-edge tiles (widest versions, prefixes). */
  static async load(source: TileSource, size: number): Promise<TiledTree> {
    const edges: Buffer[] = [];
    for (let level = 0; level < tileLevels(size); level++) {
      const { index, width } = edgeTile(size, level);
      if (width === 0) {
        edges.push(Buffer.alloc(0));
        continue;
      }
      const stored = await source.readTile(level, index);
      const id = { level, index };
      if (stored === undefined) throw new TileMismatchError(id, 'missing');
      if (stored.length % HASH_SIZE !== 0 || stored.length > TILE_BYTES) {
        throw new TileMismatchError(id, 'malformed');
      }
      if (stored.length < width * HASH_SIZE) throw new TileMismatchError(id, 'short');
      edges.push(Buffer.from(stored.subarray(0, width * HASH_SIZE)));
    }
    return new TiledTree(source, { size, edges });
  }

  get size(): number {
    return this.#treeSize;
  }

  /** A copy of the right edge (to return to with reset()). */
  frontier(): Frontier {
    return {
      size: this.#treeSize,
      edges: this.#edges.map((e, l) =>
        Buffer.from(e.subarray(0, (this.#widths[l] ?? 0) * HASH_SIZE)),
      ),
    };
  }

  /** Back to `frontier` (an earlier state of this tree); forgets unsettled tiles. */
  reset(frontier: Frontier): void {
    this.#treeSize = frontier.size;
    this.#edges = [];
    this.#widths = [];
    this.#indices = [];
    const levels = Math.max(tileLevels(frontier.size), frontier.edges.length);
    for (let level = 0; level < levels; level++) {
      const { index, width } = edgeTile(frontier.size, level);
      const given = frontier.edges[level] ?? Buffer.alloc(0);
      if (given.length !== width * HASH_SIZE) {
        throw new RangeError(`frontier level ${level} holds the wrong number of hashes`);
      }
      const buf = Buffer.alloc(TILE_BYTES);
      given.copy(buf);
      this.#edges.push(buf);
      this.#widths.push(width);
      this.#indices.push(index);
    }
    this.#completed = new Map();
    this.#dirty = new Set();
    this.#edgeMemo = new Map();
  }

  /** Append one leaf hash (already prefixed: merkle.ts leafHash()). */
  appendLeaf(leaf: Uint8Array): void {
    if (leaf.length !== HASH_SIZE) throw new TypeError('leaf hash must be 32 bytes');
    let hash: Buffer = Buffer.from(leaf);
    for (let level = 0; ; level++) {
      if (this.#edges[level] === undefined) {
        this.#edges[level] = Buffer.alloc(TILE_BYTES);
        this.#widths[level] = 0;
        this.#indices[level] = 0;
      }
      const edge = this.#edges[level] ?? Buffer.alloc(0);
      const width = this.#widths[level] ?? 0;
      const index = this.#indices[level] ?? 0;
      edge.set(hash, width * HASH_SIZE);
      this.#widths[level] = width + 1;
      this.#dirty.add(level);
      if (width + 1 < TILE_WIDTH) break;
      // The tile is full: it never changes again; its root joins the level above.
      const full = Buffer.from(edge);
      this.#completed.set(key(level, index), { level, index, hashes: full });
      hash = fullTileRoot(full);
      this.#widths[level] = 0;
      this.#indices[level] = index + 1;
    }
    this.#treeSize += 1;
  }

  /** The tiles changed since the last settle(): full tiles completed and the edge tiles. */
  writes(): TileData[] {
    const out = [...this.#completed.values()];
    for (const level of this.#dirty) {
      const width = this.#widths[level] ?? 0;
      const edge = this.#edges[level];
      if (width === 0 || edge === undefined) continue;
      out.push({
        level,
        index: this.#indices[level] ?? 0,
        hashes: Buffer.from(edge.subarray(0, width * HASH_SIZE)),
      });
    }
    return out;
  }

  /** The writes are durable: the completed tiles are now read (and trusted) as stored. */
  settle(): void {
    for (const t of this.#completed.values()) {
      this.#remember(t.level, t.index, tileInnerLevels(t.hashes));
    }
    this.#completed = new Map();
    this.#dirty = new Set();
  }

  /** Root of the whole tree, from the right edge alone. */
  root(): Buffer {
    let acc: Buffer | undefined;
    for (let level = 0; level < this.#edges.length; level++) {
      const width = this.#widths[level] ?? 0;
      if (width === 0) continue;
      const levels = this.#edgeLevels(level);
      for (let r = 0; r < TILE_HEIGHT; r++) {
        if ((width & (1 << r)) === 0) continue;
        const node = at(levels[r] ?? Buffer.alloc(0), (width >> r) - 1);
        acc = acc === undefined ? node : nodeHash(node, acc);
      }
    }
    return acc ?? Buffer.from(EMPTY_ROOT);
  }

  /** Root of the tree's first `size` leaves. */
  async rootAt(size: number): Promise<Buffer> {
    this.#checkSize(size);
    if (size === this.#treeSize) return this.root();
    return size === 0 ? Buffer.from(EMPTY_ROOT) : this.#subtree(0, size);
  }

  async leaf(index: number): Promise<Buffer> {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#treeSize) {
      throw new AuditRangeError(`leaf ${index} is not in the tree (size ${this.#treeSize})`);
    }
    return this.#node(0, index);
  }

  /** RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf to root. */
  async inclusionProof(index: number, size: number): Promise<Buffer[]> {
    this.#checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new AuditRangeError(`leaf ${index} is not in a tree of size ${size}`);
    }
    const path: Buffer[] = [];
    for (const { lo, hi } of inclusionSiblings(index, size)) path.push(await this.#subtree(lo, hi));
    return path;
  }

  /** RFC 9162 §2.1.4.1 PROOF(from, D[0:to]) for 1 <= from <= to (empty when equal). */
  async consistencyProof(from: number, to: number): Promise<Buffer[]> {
    this.#checkSize(to);
    if (!Number.isSafeInteger(from) || from < 1 || from > to) {
      throw new AuditRangeError(`no consistency proof from size ${from} to size ${to}`);
    }
    const path: Buffer[] = [];
    for (const { lo, hi } of consistencySubtrees(from, to)) path.push(await this.#subtree(lo, hi));
    return path;
  }

  /**
   * The first `width` hashes of tile (level, index) as C2SP tlog-tiles serves them: the edge
   * from memory, a full tile only once it agrees with its parent (TileMismatchError if not).
   */
  async tileHashes(level: number, index: number, width: number): Promise<Buffer> {
    const available = levelCount(this.#treeSize, level) - index * TILE_WIDTH;
    if (!Number.isSafeInteger(index) || index < 0 || width < 1 || width > available) {
      throw new AuditRangeError(`tile ${level}/${index} has no ${width} hashes in this tree`);
    }
    const hashes = (await this.#tileLevelsOf(level, index))[0] ?? Buffer.alloc(0);
    return Buffer.from(hashes.subarray(0, width * HASH_SIZE));
  }

  /** How many verified full tiles each tile level keeps in memory now (for the bound). */
  cachedTiles(): number[] {
    return this.#caches.map((c) => c.size);
  }

  #checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.#treeSize) {
      throw new AuditRangeError(`tree size ${size} is beyond the log (size ${this.#treeSize})`);
    }
  }

  /** MTH(D[lo:hi]) for hi > lo, following the RFC's split, perfect subtrees from tiles. */
  async #subtree(lo: number, hi: number): Promise<Buffer> {
    const n = hi - lo;
    if (n > 0 && (n & (n - 1)) === 0 && lo % n === 0) return this.#node(Math.log2(n), lo / n);
    const k = splitPoint(n);
    const left = await this.#subtree(lo, lo + k);
    return nodeHash(left, await this.#subtree(lo + k, hi));
  }

  /** The tree node at `height` (2^height leaves), `index` from the left. */
  async #node(height: number, index: number): Promise<Buffer> {
    const level = Math.floor(height / TILE_HEIGHT);
    const r = height % TILE_HEIGHT;
    const first = index * 2 ** r;
    const tile = Math.floor(first / TILE_WIDTH);
    const levels = await this.#tileLevelsOf(level, tile);
    const inner = levels[r];
    const i = (first - tile * TILE_WIDTH) >> r;
    if (inner === undefined || (i + 1) * HASH_SIZE > inner.length) {
      throw new RangeError(`node ${height}/${index} is not in the tree`);
    }
    return at(inner, i);
  }

  #edgeLevels(level: number): Buffer[] {
    const index = this.#indices[level] ?? 0;
    const width = this.#widths[level] ?? 0;
    const memo = this.#edgeMemo.get(level);
    if (memo !== undefined && memo.index === index && memo.width === width) return memo.levels;
    const edge = this.#edges[level] ?? Buffer.alloc(0);
    const levels = tileInnerLevels(edge.subarray(0, width * HASH_SIZE));
    this.#edgeMemo.set(level, { index, width, levels });
    return levels;
  }

  async #tileLevelsOf(level: number, index: number): Promise<Buffer[]> {
    if (index === (this.#indices[level] ?? 0)) return this.#edgeLevels(level);
    const k = key(level, index);
    const pending = this.#completed.get(k);
    if (pending !== undefined) return tileInnerLevels(pending.hashes);
    const cache = this.#caches[level];
    const cached = cache?.get(index);
    if (cache !== undefined && cached !== undefined) {
      cache.delete(index);
      cache.set(index, cached);
      return cached;
    }
    const id = { level, index };
    const stored = await this.#source.readTile(level, index);
    if (stored === undefined) throw new TileMismatchError(id, 'missing');
    if (stored.length !== TILE_BYTES) throw new TileMismatchError(id, 'short');
    const levels = tileInnerLevels(Buffer.from(stored));
    // A full tile is what its parent says it is, up to the edge in memory.
    const parent = await this.#node((level + 1) * TILE_HEIGHT, index);
    if (!parent.equals(at(levels[TILE_HEIGHT] ?? Buffer.alloc(0), 0))) {
      throw new TileMismatchError(id, 'root_mismatch');
    }
    this.#remember(level, index, levels);
    return levels;
  }

  /** Keeps a verified full tile; the level's least recently used one goes past the bound. */
  #remember(level: number, index: number, levels: Buffer[]): void {
    for (let l = this.#caches.length; l <= level; l++) this.#caches.push(new Map());
    const cache = this.#caches[level] ?? new Map<number, Buffer[]>();
    cache.delete(index);
    cache.set(index, levels);
    if (cache.size > CACHE_TILES_PER_LEVEL) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
  }
}
