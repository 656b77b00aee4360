/**
 * A tile edited on disk (LevelDB, the appliance stopped) is never served as a tlog-tile: the
 * server re-checks a full tile against its parent when it reads it and answers 503
 * `audit_unavailable` with `audit_tile_mismatch` in the operator log; tiles that do not
 * depend on it are still served, and what is served still verifies with the independent
 * client. Real swtpm anchor, real LevelDB store, the routes through app.inject().
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAuditAnchor } from '../../../src/audit/anchor.tpm.js';
import type { TpmAnchorConfig } from '../../../src/audit/anchor.tpm.js';
import { noteVerifierKey } from '../../../src/audit/checkpoint.js';
import { createAudit } from '../../../src/audit/index.js';
import type { AuditService } from '../../../src/audit/service.js';
import { createServer } from '../../../src/http/app.js';
import { auditTlogRoutes } from '../../../src/http/routes/audit-tlog.js';
import { openDatabase, type Database } from '../../../src/shared/db.level.js';
import { NativeTpm } from '../../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../../rig/sim.js';
import { captureLogger, event, provisionAnchor, tempDir } from '../helpers.js';
import { testSigner } from '../signer.js';
import { TlogClient, tilePathOf, type Fetcher } from './client.js';

const ORIGIN = 'grantor.test/tlog-disk';
const signer = testSigner(ORIGIN);
let sim: SimTpm;
let tpm: NativeTpm;
let config: TpmAnchorConfig;
let work: string;
let db: Database;
let audit: AuditService;
let app: ReturnType<typeof createServer>;
const logger = captureLogger();

async function start(provision = false): Promise<void> {
  audit = createAudit(
    { origin: ORIGIN, minAnchorIntervalMs: 0 },
    { db, anchor: new TpmAuditAnchor(tpm, config), signer, logger },
  );
  if (provision) await audit.provision();
  await audit.ready();
  app = createServer();
  await app.register(auditTlogRoutes, { audit });
  await app.ready();
}

async function stop(): Promise<void> {
  await app.close();
  await audit.close();
}

const fetcher: Fetcher = async (path) => {
  const res = await app.inject({ url: `/v1/audit/tlog/0/${path}` });
  return { status: res.statusCode, body: res.rawPayload };
};

beforeAll(async () => {
  sim = await startSimTpm();
  tpm = await NativeTpm.open(sim.tcti);
  config = await provisionAnchor(tpm);
  work = await tempDir('grantor-tlog-disk-');
  db = await openDatabase(join(work, 'db'));
  await start(true);
  for (let i = 0; i < 600; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, k) => audit.append(event(i + k))));
  }
});

afterAll(async () => {
  try {
    await stop();
    await db.close();
    await tpm.close();
  } finally {
    await sim.destroy();
    await rm(work, { recursive: true, force: true });
  }
});

describe('a tile edited on disk', () => {
  it('is refused by the server, and the client verifies what is still served', async () => {
    const before = await fetcher(tilePathOf(0, 0));
    expect(before.status).toBe(200);
    await stop();
    // Rewrite one hash of the full level-0 tile 0 (entries 0-255) in the store: older than
    // the last batch, which start-up re-hashes, so start-up does not read it.
    const store = db.sublevel('audit', {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
    });
    const key = `t!00!${'0'.padStart(16, '0')}`;
    const tile = Buffer.from((await store.get(key)) ?? '', 'base64');
    expect(tile.equals(before.body)).toBe(true);
    tile[5] = (tile[5] ?? 0) ^ 1;
    await store.put(key, tile.toString('base64'));
    await start();

    const res = await app.inject({ url: `/v1/audit/tlog/0/${tilePathOf(0, 0)}` });
    expect(res.statusCode).toBe(503);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('audit_unavailable');
    expect(res.body).not.toContain(tile.toString('base64').slice(0, 16));
    expect(logger.lines.map((l) => l.obj)).toContainEqual(
      expect.objectContaining({ event: 'audit_tile_mismatch', problem: 'root_mismatch' }),
    );
    // The bundle of those entries cannot be checked against the tile either.
    const bundle = await app.inject({ url: `/v1/audit/tlog/0/${tilePathOf('entries', 0)}` });
    expect(bundle.statusCode).toBe(503);

    // What does not depend on that tile is still served and verifies.
    const client = new TlogClient(
      fetcher,
      noteVerifierKey(signer.keyName, signer.publicKey),
      ORIGIN,
    );
    const { checkpoint } = await client.checkpoint();
    await client.useCheckpoint(checkpoint);
    expect((await client.inclusionProof(300)).length).toBeGreaterThan(0);
    await expect(client.inclusionProof(10)).rejects.toThrow(/fetch: tile\/0\/000: HTTP 503/);
  });
});
