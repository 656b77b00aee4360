/**
 * A tile edited on disk (LevelDB, the appliance stopped) is never served as a tlog-tile: the
 * server re-checks a full tile against its parent when it reads it and answers 503
 * `audit_unavailable` with `audit_tile_mismatch` in the operator log; tiles that do not
 * depend on it are still served, and what is served still verifies with the independent
 * client. Real swtpm anchor, real LevelDB store, the routes through app.inject().
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '../helpers.js';
import { startServedLog, type ServedLog } from '../tlog-rig.js';
import { TlogClient, tilePathOf } from './client.js';

const ORIGIN = 'grantor.test/tlog-disk';
const logger = captureLogger();
let log: ServedLog;

beforeAll(async () => {
  log = await startServedLog(ORIGIN, { logger, maxBatchSize: 100 });
  await log.fill(600);
});

afterAll(async () => {
  await log.close();
});

describe('a tile edited on disk', () => {
  it('is refused by the server, and the client verifies what is still served', async () => {
    const before = await log.fetch(tilePathOf(0, 0));
    expect(before.status).toBe(200);
    // Rewrite one hash of the full level-0 tile 0 (entries 0-255) in the store: older than
    // the last batch, which start-up re-hashes, so start-up does not read it.
    const tile = Buffer.from(before.body);
    tile[5] = (tile[5] ?? 0) ^ 1;
    await log.reopen(async (db) => {
      const store = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
      const key = `t!00!${'0'.padStart(16, '0')}`;
      expect(Buffer.from((await store.get(key)) ?? '', 'base64').equals(before.body)).toBe(true);
      await store.put(key, tile.toString('base64'));
    });

    const res = await log.fetch(tilePathOf(0, 0));
    expect(res.status).toBe(503);
    const body = JSON.parse(res.body.toString('utf8')) as { error: { code: string } };
    expect(body.error.code).toBe('audit_unavailable');
    expect(logger.lines.map((l) => l.obj)).toContainEqual(
      expect.objectContaining({ event: 'audit_tile_mismatch', problem: 'root_mismatch' }),
    );
    // The bundle of those entries cannot be checked against the tile either.
    expect((await log.fetch(tilePathOf('entries', 0))).status).toBe(503);

    // What does not depend on that tile is still served and verifies.
    const client = new TlogClient((path) => log.fetch(path), log.vkey, ORIGIN);
    const { checkpoint } = await client.checkpoint();
    await client.useCheckpoint(checkpoint);
    expect((await client.inclusionProof(300)).length).toBeGreaterThan(0);
    await expect(client.inclusionProof(10)).rejects.toThrow(/fetch: tile\/0\/000: HTTP 503/);
  });

  it('an older entry edited with its hash left in place is never served', async () => {
    // Entry 300's subject changed on disk, its `hash` member kept: the leaf, the tiles and
    // the entry bundle still agree, only the entry's content no longer hashes to `hash`.
    await log.reopen(async (db) => {
      const store = db.sublevel('audit', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
      const key = `e!${'300'.padStart(16, '0')}`;
      const entry = JSON.parse((await store.get(key)) ?? '{}') as { subject: string };
      await store.put(key, JSON.stringify({ ...entry, subject: 'rt_someone_else' }));
    });
    await expect(log.audit.entries(300, 1)).rejects.toMatchObject({ code: 'audit_unavailable' });
    await expect(log.audit.entries(301, 1)).resolves.toHaveLength(1);
  });
});
