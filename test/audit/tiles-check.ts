/**
 * An independent check that a LevelDB audit store's tiles agree with its entries: the tree
 * levels are recomputed here from the entries' hashes (RFC 9162 leaf and node hashes, no
 * code of src/audit's tree), cut into C2SP tlog-tiles of height 8, and compared with the
 * stored `t!` records (the widest version of each tile), both ways. Used by the crash
 * harness after every recovery (crash-child.ts) and at the end (crash.test.ts).
 */
import { createHash } from 'node:crypto';
import type { Database } from '../../src/shared/db.level.js';

const sha = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Expected tiles (`<level>/<index>` -> base64 of the hashes) of a tree over entry hashes. */
export function expectedTiles(entryHashes: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  let level = entryHashes.map((h) => sha(Buffer.from([0]), Buffer.from(h, 'hex')));
  for (let height = 0; level.length > 0; height++) {
    if (height % 8 === 0) {
      for (let n = 0; n * 256 < level.length; n++) {
        const hashes = level.slice(n * 256, (n + 1) * 256);
        out.set(`${height / 8}/${n}`, Buffer.concat(hashes).toString('base64'));
      }
    }
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) {
      next.push(
        sha(Buffer.from([1]), level[i] ?? Buffer.alloc(0), level[i + 1] ?? Buffer.alloc(0)),
      );
    }
    level = next;
  }
  return out;
}

/** The stored tiles of one store (a log period's, `audit` for the first), keyed like expectedTiles(). */
export async function storedTiles(db: Database, store = 'audit'): Promise<Map<string, string>> {
  const sub = db.sublevel(store, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  const out = new Map<string, string>();
  for await (const [key, value] of sub.iterator({ gte: 't!', lt: 't!~' })) {
    const [, level, index] = key.split('!');
    out.set(`${Number(level)}/${Number(index)}`, value);
  }
  return out;
}

/** The first disagreement between stored and expected tiles, or undefined. */
export function tilesDisagree(
  stored: ReadonlyMap<string, string>,
  expected: ReadonlyMap<string, string>,
): string | undefined {
  for (const [k, v] of expected) {
    const s = stored.get(k);
    if (s === undefined) return `tile ${k} missing`;
    if (s !== v) return `tile ${k} differs`;
  }
  for (const k of stored.keys()) if (!expected.has(k)) return `tile ${k} is extra`;
  return undefined;
}

/**
 * The time index recomputed here from the stored entries (not with src/audit's code): a
 * `m!` key at each entry whose time is later than every earlier one, a `k!` key at each
 * entry earlier than one before it, nothing else. Returns the first disagreement with the
 * stored keys, both ways, or undefined.
 */
export async function timeIndexDisagrees(db: Database): Promise<string | undefined> {
  const sub = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  const expected = new Set<string>();
  let latest = '';
  let seq = 0;
  for await (const value of sub.values({ gte: 'e!', lt: 'e!~' })) {
    const { time } = JSON.parse(value) as { time: string };
    const padded = seq.toString().padStart(16, '0');
    if (time > latest) {
      expected.add(`m!${time}!${padded}`);
      latest = time;
    } else if (time < latest) expected.add(`k!${time}!${padded}`);
    seq += 1;
  }
  const stored = new Set<string>();
  for await (const key of sub.keys({ gte: 'k!', lt: 'k!~' })) stored.add(key);
  for await (const key of sub.keys({ gte: 'm!', lt: 'm!~' })) stored.add(key);
  for (const k of expected) if (!stored.has(k)) return `time key ${k} missing`;
  for (const k of stored) if (!expected.has(k)) return `time key ${k} is extra`;
  return undefined;
}
