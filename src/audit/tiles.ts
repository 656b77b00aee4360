/**
 * C2SP tlog-tiles arithmetic for the audit tree (height 8, so a full tile holds 256 hashes):
 * tile (L, N) holds the hashes of the tree's level 8·L nodes N·256 … N·256+W-1, level 0
 * being the RFC 9162 leaf hashes. A partial tile of width W is always a prefix of the tile
 * it becomes, so one stored value per tile (its widest version) answers every width.
 * Pure functions only: the tree that uses them is tiled-tree.ts.
 */
import { AuditTilePathError } from './errors.js';
import { HASH_SIZE, nodeHash } from './merkle.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;

export interface TileId {
  readonly level: number;
  readonly index: number;
}

/** A tile to store: its hashes (W·32 bytes, 1 <= W <= 256). */
export interface TileData extends TileId {
  readonly hashes: Buffer;
}

/** How many level-8·L hashes a tree of `size` leaves has (full subtrees of 256^L leaves). */
export function levelCount(size: number, level: number): number {
  return Math.floor(size / TILE_WIDTH ** level);
}

/** The right-edge tile of `level` in a tree of `size`: its index and width (0: none). */
export function edgeTile(size: number, level: number): { index: number; width: number } {
  const count = levelCount(size, level);
  return { index: Math.floor(count / TILE_WIDTH), width: count % TILE_WIDTH };
}

/** Tile levels a tree of `size` has (the top one holds a partial tile, or is empty at 0). */
export function tileLevels(size: number): number {
  let levels = 1;
  while (levelCount(size, levels) > 0) levels += 1;
  return levels;
}

/**
 * The hashes inside one tile, level by level: levels[0] = the tile's own hashes, levels[k]
 * the parents of pairs of levels[k-1] (floor(W / 2^k) of them); levels[8] of a full tile
 * is its root, the hash its parent tile holds.
 */
export function tileInnerLevels(hashes: Buffer): Buffer[] {
  const levels: Buffer[] = [hashes];
  let current = hashes;
  for (let k = 1; k <= TILE_HEIGHT; k++) {
    const n = Math.floor(current.length / HASH_SIZE / 2);
    const next = Buffer.alloc(n * HASH_SIZE);
    for (let i = 0; i < n; i++) {
      const left = current.subarray(2 * i * HASH_SIZE, (2 * i + 1) * HASH_SIZE);
      const right = current.subarray((2 * i + 1) * HASH_SIZE, (2 * i + 2) * HASH_SIZE);
      next.set(nodeHash(left, right), i * HASH_SIZE);
    }
    levels.push(next);
    current = next;
  }
  return levels;
}

/** The root of a full tile (the level 8·(L+1) hash it stands for). */
export function fullTileRoot(hashes: Buffer): Buffer {
  if (hashes.length !== TILE_WIDTH * HASH_SIZE) throw new RangeError('tile is not full');
  const top = tileInnerLevels(hashes)[TILE_HEIGHT];
  if (top === undefined) throw new RangeError('tile is not full');
  return Buffer.from(top);
}

/**
 * The C2SP tlog-tiles path element of a tile index: groups of three decimal digits, every
 * group but the last prefixed with `x` (1234067 → `x001/x234/067`).
 */
export function encodeTileIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError('bad tile index');
  const groups: string[] = [];
  let n = index;
  do {
    groups.unshift((n % 1000).toString().padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

/** `tile/<L>/<N>[.p/<W>]` for a tile of width W (W = 256 or omitted: a full tile). */
export function tilePath(level: number, index: number, width = TILE_WIDTH): string {
  const base = `tile/${level}/${encodeTileIndex(index)}`;
  return width === TILE_WIDTH ? base : `${base}.p/${width}`;
}

/** The tiles of hashes at level L, or the entry bundles (level 0 of the entries). */
export interface TileRequest {
  readonly kind: 'hashes' | 'entries';
  /** 0 for entry bundles. */
  readonly level: number;
  readonly index: number;
  /** 1 … 256 (256: the full tile, no `.p/` suffix). */
  readonly width: number;
}

/** Tile levels C2SP allows (0 … 63). */
export const MAX_TILE_LEVEL = 63;
const GROUP = /^x\d{3}$/;
const LAST = /^\d{3}$/;
const DECIMAL = /^(0|[1-9]\d{0,2})$/;

/**
 * Parse what follows `<prefix>/tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, accepting
 * only the C2SP canonical form (no extra leading zero group such as `x000/`, L and W with no
 * leading zeros, 1 <= W <= 255), so one resource has one path. Anything else:
 * AuditTilePathError.
 */
export function parseTilePath(path: string): TileRequest {
  const bad = (why: string): AuditTilePathError =>
    new AuditTilePathError(`not a tile path (${why}): want <L>/<N>[.p/<W>] or entries/<N>[.p/<W>]`);
  if (path.length > 128) throw bad('too long');
  const parts = path.split('/');
  const head = parts.shift();
  let kind: TileRequest['kind'] = 'hashes';
  let level = 0;
  if (head === 'entries') kind = 'entries';
  else if (head !== undefined && DECIMAL.test(head) && Number(head) <= MAX_TILE_LEVEL) {
    level = Number(head);
  } else throw bad('level');
  let width = TILE_WIDTH;
  if (parts.length >= 2 && parts.at(-2)?.endsWith('.p') === true) {
    const w = parts.pop() ?? '';
    if (!DECIMAL.test(w) || Number(w) < 1 || Number(w) >= TILE_WIDTH) throw bad('width');
    width = Number(w);
    const last = parts.pop() ?? '';
    parts.push(last.slice(0, -'.p'.length));
  }
  const last = parts.pop();
  if (last === undefined || !LAST.test(last) || !parts.every((g) => GROUP.test(g))) {
    throw bad('index');
  }
  if (parts.length > 0 && parts[0] === 'x000') throw bad('index not canonical');
  // 2^53 has 16 digits: at most five groups, then the safe-integer check.
  if (parts.length > 5) throw bad('index too large');
  const index = Number([...parts.map((g) => g.slice(1)), last].join(''));
  if (!Number.isSafeInteger(index)) throw bad('index too large');
  return { kind, level, index, width };
}
