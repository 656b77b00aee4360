/**
 * The spec's own example through the independent client: "a tree of size 70,000 will be
 * represented by 273 full level 0 tiles, one partial level 0 tile of width 112, one full
 * level 1 tile, one partial level 1 tile of width 17, and one partial level 2 tile of width
 * 1" (c2sp.org/tlog-tiles). Real swtpm anchor and LevelDB store, routes through inject();
 * proofs across the level-1 tile boundary, each cross-checked with the JSON proofs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServedLog, type ServedLog } from '../tlog-rig.js';
import { TlogClient, leafHashOf, tilePathOf, type Fetcher } from './client.js';
import { verifiedConsistency, verifiedInclusion } from './proofs.js';

const ORIGIN = 'grantor.test/tlog-levels';
const SIZE = 70_000;
let log: ServedLog;
const notes = new Map<number, string>();

const fetched: string[] = [];
const fetcher: Fetcher = async (path) => {
  fetched.push(path);
  return log.fetch(path);
};

beforeAll(async () => {
  log = await startServedLog(ORIGIN, { maxBatchSize: 2000 });
  for (const size of [600, 65_536, SIZE]) {
    await log.fill(size);
    notes.set(size, (await log.audit.checkpoint()).note);
  }
}, 600_000);

afterAll(async () => {
  await log.close();
});

describe('the tlog-tiles example tree of 70,000 entries', () => {
  const client = (): TlogClient => new TlogClient(fetcher, log.vkey, ORIGIN);

  it('is the tiles the spec lists, and they make the checkpoint root', async () => {
    const c = client();
    const { checkpoint } = await c.checkpoint();
    expect(checkpoint.size).toBe(SIZE);
    fetched.length = 0;
    await c.useCheckpoint(checkpoint);
    expect(fetched).toEqual(['tile/0/273.p/112', 'tile/1/001.p/17', 'tile/2/000.p/1']);
    expect((await fetcher(tilePathOf(0, 272))).body.length).toBe(256 * 32);
    expect((await fetcher(tilePathOf(1, 0))).body.length).toBe(256 * 32);
    expect((await fetcher(tilePathOf(0, 273))).status).toBe(404);
    expect((await fetcher(tilePathOf(1, 1))).status).toBe(404);
    expect((await fetcher(tilePathOf(3, 0, 1))).status).toBe(404);
  });

  it('proves inclusion across tile levels and consistency with older checkpoints', async () => {
    const c = client();
    const { checkpoint } = await c.checkpoint();
    await c.useCheckpoint(checkpoint);
    for (const seq of [0, 255, 256, 65_535, 65_536, 69_887, 69_888, SIZE - 1]) {
      const bundle = await c.entryBundle(Math.floor(seq / 256));
      const leaf = leafHashOf(bundle[seq % 256] ?? Buffer.alloc(0));
      const path = await verifiedInclusion(c, checkpoint, seq, leaf);
      expect(path).toEqual((await log.audit.inclusionProof(seq, SIZE)).path);
    }
    for (const [size, note] of notes) {
      const old = c.open(note);
      expect(old.size).toBe(size);
      const path = await verifiedConsistency(c, old, checkpoint);
      if (size < SIZE) expect(path).toEqual((await log.audit.consistencyProof(size, SIZE)).path);
    }
  });
});
