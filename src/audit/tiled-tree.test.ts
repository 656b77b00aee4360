import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MerkleTree, leafHash, sha256 } from './merkle.js';
import {
  CACHE_TILES_PER_LEVEL,
  TiledTree,
  TileMismatchError,
  type TileSource,
} from './tiled-tree.js';
import { encodeTileIndex, tilePath, type TileData } from './tiles.js';

/** A tile store in a Map, written the way the log writes: after each batch, its tiles. */
class MapTiles implements TileSource {
  readonly tiles = new Map<string, Buffer>();
  readTile(level: number, index: number): Promise<Buffer | undefined> {
    return Promise.resolve(this.tiles.get(`${level}/${index}`));
  }
  write(tiles: readonly TileData[]): void {
    for (const t of tiles) this.tiles.set(`${t.level}/${t.index}`, Buffer.from(t.hashes));
  }
}

const leaves = new Map<number, Buffer>();
const leaf = (i: number): Buffer => {
  let l = leaves.get(i);
  if (l === undefined) {
    l = leafHash(sha256(Buffer.from(`entry ${i}`)));
    leaves.set(i, l);
  }
  return l;
};

function build(n: number, batch = 37): { tiles: MapTiles; tree: TiledTree; ref: MerkleTree } {
  const tiles = new MapTiles();
  const tree = new TiledTree(tiles);
  const ref = new MerkleTree();
  for (let i = 0; i < n; i++) {
    tree.appendLeaf(leaf(i));
    ref.appendLeaf(leaf(i));
    if ((i + 1) % batch === 0 || i === n - 1) {
      tiles.write(tree.writes());
      tree.settle();
    }
  }
  return { tiles, tree, ref };
}

// Past 65,536 leaves the tree has a third tile level: built once, shared.
let big: ReturnType<typeof build> | undefined;
const bigTree = (): ReturnType<typeof build> => (big ??= build(70_000));

const hex = (bs: readonly Buffer[]): string[] => bs.map((b) => b.toString('hex'));

describe('tiled tree', () => {
  it('gives the roots and proofs of the in-memory RFC 9162 tree, for every size', async () => {
    const n = 70_000;
    const { tiles, tree, ref } = bigTree();
    expect(tree.root().equals(ref.root())).toBe(true);
    const loaded = await TiledTree.load(tiles, n);
    expect(loaded.root().equals(ref.root())).toBe(true);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: n }),
        fc.integer({ min: 1, max: n }),
        async (a, b) => {
          const [from, to] = a <= b ? [a, b] : [b, a];
          expect((await loaded.rootAt(to)).equals(ref.root(to))).toBe(true);
          expect(hex(await loaded.inclusionProof(from - 1, to))).toEqual(
            hex(ref.inclusionProof(from - 1, to)),
          );
          expect(hex(await loaded.consistencyProof(from, to))).toEqual(
            hex(ref.consistencyProof(from, to)),
          );
          expect((await loaded.leaf(from - 1)).equals(ref.leaf(from - 1))).toBe(true);
        },
      ),
      { numRuns: 100 },
    );
  }, 120_000);

  it('loads at every size and keeps appending as if never stopped', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1500 }),
        fc.integer({ min: 1, max: 400 }),
        async (n, more) => {
          const { tiles } = build(n, 11);
          const loaded = await TiledTree.load(tiles, n);
          const ref = new MerkleTree();
          for (let i = 0; i < n + more; i++) ref.appendLeaf(leaf(i));
          for (let i = n; i < n + more; i++) loaded.appendLeaf(leaf(i));
          expect(loaded.root().equals(ref.root())).toBe(true);
          tiles.write(loaded.writes());
          loaded.settle();
          expect(build(n + more, 11).tiles.tiles).toEqual(tiles.tiles);
        },
      ),
      { numRuns: 15 },
    );
  }, 120_000);

  it('returns to a frontier and forgets the tiles of the undone batch', async () => {
    const { tiles, tree, ref } = build(1000);
    const before = tree.frontier();
    for (let i = 0; i < 300; i++) tree.appendLeaf(leaf(-i - 1));
    tree.reset(before);
    expect(tree.writes()).toEqual([]);
    expect(tree.root().equals(ref.root())).toBe(true);
    expect(hex(await tree.inclusionProof(5, 1000))).toEqual(hex(ref.inclusionProof(5, 1000)));
    expect(tiles.tiles.size).toBeGreaterThan(0);
  });

  it('serves proofs over tiles not yet durable (a batch in flight)', async () => {
    const { tree } = build(250);
    const ref = new MerkleTree();
    for (let i = 0; i < 250; i++) ref.appendLeaf(leaf(i));
    for (let i = 250; i < 300; i++) tree.appendLeaf(leaf(i));
    // Tile 0/0 is complete in memory only; proofs at the anchored size 250 still work.
    expect(hex(await tree.inclusionProof(3, 250))).toEqual(hex(ref.inclusionProof(3, 250)));
  });

  it('refuses a stored tile that is missing, short or not what its parent holds', async () => {
    const { tiles } = bigTree();
    const edit = async (k: string, v: Buffer | undefined): Promise<unknown> => {
      const copy = new MapTiles();
      for (const [a, b] of tiles.tiles) copy.tiles.set(a, b);
      if (v === undefined) copy.tiles.delete(k);
      else copy.tiles.set(k, v);
      const t = await TiledTree.load(copy, 70_000);
      return t.inclusionProof(10, 70_000).catch((e: unknown) => e);
    };
    const good = tiles.tiles.get('0/0') ?? Buffer.alloc(0);
    const flipped = Buffer.from(good);
    flipped[5] = (flipped[5] ?? 0) ^ 1;
    expect(await edit('0/0', undefined)).toMatchObject({ problem: 'missing' });
    expect(await edit('0/0', good.subarray(0, 255 * 32))).toMatchObject({ problem: 'short' });
    const wrong = await edit('0/0', flipped);
    expect(wrong).toBeInstanceOf(TileMismatchError);
    expect(wrong).toMatchObject({ problem: 'root_mismatch', tile: { level: 0, index: 0 } });
    // The parent tile changed too (consistently): caught one level up.
    expect(await edit('1/0', Buffer.alloc(256 * 32))).toMatchObject({
      problem: 'root_mismatch',
      tile: { level: 1, index: 0 },
    });
  }, 120_000);

  it('refuses to load a right edge that is missing or too short', async () => {
    const { tiles } = build(1000);
    const edgeKey = '0/3';
    const short = new MapTiles();
    for (const [a, b] of tiles.tiles) short.tiles.set(a, b);
    short.tiles.set(edgeKey, (tiles.tiles.get(edgeKey) ?? Buffer.alloc(0)).subarray(0, 32));
    await expect(TiledTree.load(short, 1000)).rejects.toMatchObject({ problem: 'short' });
    short.tiles.set(edgeKey, Buffer.alloc(33));
    await expect(TiledTree.load(short, 1000)).rejects.toMatchObject({ problem: 'malformed' });
    short.tiles.delete(edgeKey);
    await expect(TiledTree.load(short, 1000)).rejects.toMatchObject({ problem: 'missing' });
  });
});

/** A copy of `tiles` that records every tile read (the tiled tree's cache misses). */
class CountingTiles extends MapTiles {
  reads: string[] = [];
  constructor(from: MapTiles) {
    super();
    for (const [k, v] of from.tiles) this.tiles.set(k, Buffer.from(v));
  }
  override readTile(level: number, index: number): Promise<Buffer | undefined> {
    this.reads.push(`${level}/${index}`);
    return super.readTile(level, index);
  }
}

describe('tiled tree cache, one per tile level', () => {
  // Two full level-1 tiles (1/0, 1/1) with 256 level-0 tiles each, and a right edge.
  const n = 140_000;
  let wide: MapTiles | undefined;
  const wideTiles = (): MapTiles => (wide ??= build(n, 4096).tiles);

  /** A cold tree over a copy of the tiles, warmed: leaf 0, then every level-0 tile under 1/1. */
  async function warmed(): Promise<{ tiles: CountingTiles; tree: TiledTree }> {
    const tiles = new CountingTiles(wideTiles());
    const tree = await TiledTree.load(tiles, n);
    await tree.inclusionProof(0, n);
    expect(tiles.reads).toContain('1/0');
    for (let t = 256; t < 512; t++) await tree.inclusionProof(t * 256, n);
    tiles.reads = [];
    return { tiles, tree };
  }

  it('keeps an upper tile that 256 level-0 reads would have evicted', async () => {
    const { tiles, tree } = await warmed();
    const ref = new MerkleTree();
    for (let i = 0; i < n; i++) ref.appendLeaf(leaf(i));
    const proof = await tree.inclusionProof(256, n);
    expect(hex(proof)).toEqual(hex(ref.inclusionProof(256, n)));
    // Only the level-0 tile of leaf 256 is read; 1/0 is still in memory.
    expect(tiles.reads).toEqual(['0/1']);
  }, 120_000);

  it('keeps at most CACHE_TILES_PER_LEVEL tiles a level', async () => {
    const { tree } = await warmed();
    await tree.inclusionProof(256, n);
    // 258 level-0 tiles were read and verified; 256 are kept, and both full level-1 tiles.
    expect(tree.cachedTiles()).toEqual([CACHE_TILES_PER_LEVEL, 2]);
  }, 120_000);

  it('still verifies a level-0 tile read under a cached parent', async () => {
    const { tiles, tree } = await warmed();
    const stored = tiles.tiles.get('0/7') ?? Buffer.alloc(0);
    const flipped = Buffer.from(stored);
    flipped[40] = (flipped[40] ?? 0) ^ 1;
    tiles.tiles.set('0/7', flipped);
    const err = await tree.inclusionProof(7 * 256, n).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TileMismatchError);
    expect(err).toMatchObject({ problem: 'root_mismatch', tile: { level: 0, index: 7 } });
    // 1/0 came from memory: the check compared the tile with the cached, verified parent.
    expect(tiles.reads).toEqual(['0/7']);
  }, 120_000);
});

describe('tile paths (C2SP tlog-tiles)', () => {
  it('encodes indices in x-prefixed groups of three digits', () => {
    expect(encodeTileIndex(0)).toBe('000');
    expect(encodeTileIndex(999)).toBe('999');
    expect(encodeTileIndex(1000)).toBe('x001/000');
    expect(encodeTileIndex(1234067)).toBe('x001/x234/067');
    expect(tilePath(0, 1234067, 17)).toBe('tile/0/x001/x234/067.p/17');
    expect(tilePath(2, 5)).toBe('tile/2/005');
  });
});
