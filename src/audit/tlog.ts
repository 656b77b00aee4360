/**
 * The log as C2SP tlog-tiles resources (docs/protocol.md §4.4): hash tiles and entry bundles
 * of the anchored tree, so that a standard tlog-tiles client can verify inclusion and
 * consistency without the appliance's JSON proofs.
 *
 * An entry bundle's entry is the 32 bytes of the entry's `hash` (SHA-256 of the entry's JCS
 * without `hash`): RFC 6962 §2.1 hashes it to exactly the tree's leaf, SHA-256(0x00 ‖ hash),
 * as the spec requires. The entry's content is `GET /v1/audit/entries`; its `hash` is checked
 * against the bundle.
 */
import type { AuditEntry } from './entry.js';
import { AuditTileBeyondTreeError, AuditTileWidthError } from './errors.js';
import { TILE_WIDTH, levelCount, type TileRequest } from './tiles.js';

/** What the tiles are read from: the log core (log.ts). */
export interface TlogLog {
  tile(level: number, index: number, width: number): Promise<Buffer>;
  entries(from: number, limit: number): Promise<AuditEntry[]>;
}

/**
 * Refuse a tile the tree of `size` does not have: none of its hashes (beyond the tree) or
 * fewer than asked (a full tile that is still partial, a partial one wider than the tree's:
 * `details.width` says how many there are).
 */
export function checkTileRequest(size: number, request: TileRequest): void {
  const count = levelCount(size, request.level);
  const start = request.index * TILE_WIDTH;
  const what =
    request.kind === 'entries'
      ? `entry bundle ${request.index}`
      : `tile ${request.level}/${request.index}`;
  if (start >= count) {
    throw new AuditTileBeyondTreeError(`${what} is beyond the tree (size ${size})`);
  }
  const available = Math.min(TILE_WIDTH, count - start);
  if (request.width > available) {
    throw new AuditTileWidthError(
      `${what} has ${available} hashes in the tree of size ${size}`,
      available,
    );
  }
}

/** A hash tile or an entry bundle of the tree of `size` (its latest checkpoint's). */
export async function readTlogResource(
  log: TlogLog,
  size: number,
  request: TileRequest,
): Promise<Buffer> {
  checkTileRequest(size, request);
  if (request.kind === 'hashes') return log.tile(request.level, request.index, request.width);
  // log.entries checks every entry's hash against its leaf in the (verified) tiles.
  const entries = await log.entries(request.index * TILE_WIDTH, request.width);
  return encodeEntryBundle(entries.map((e) => Buffer.from(e.hash, 'hex')));
}

/** C2SP entry bundle: each entry as a big-endian uint16 length, then its bytes. */
export function encodeEntryBundle(entries: readonly Buffer[]): Buffer {
  return Buffer.concat(
    entries.flatMap((e) => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(e.length);
      return [length, e];
    }),
  );
}
