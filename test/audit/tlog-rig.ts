/**
 * An audit log served as tlog-tiles for the tlog-client tests: a real swtpm anchor, a real
 * LevelDB store, createAudit and the tlog routes through app.inject(); `reopen` stops the
 * log, lets a test edit the store (the appliance stopped) and starts it again.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TpmAuditAnchor, type TpmAnchorConfig } from '../../src/audit/anchor.tpm.js';
import { noteVerifierKey } from '../../src/audit/checkpoint.js';
import { createAudit } from '../../src/audit/index.js';
import type { AuditService } from '../../src/audit/service.js';
import { createServer } from '../../src/http/app.js';
import { auditTlogRoutes } from '../../src/http/routes/audit-tlog.js';
import { openDatabase, type Database } from '../../src/shared/db.level.js';
import type { DomainLogger } from '../../src/shared/log.js';
import { NativeTpm } from '../../src/tpm/tpm.native.js';
import { startSimTpm, type SimTpm } from '../rig/sim.js';
import { event, provisionAnchor, tempDir } from './helpers.js';
import { testSigner } from './signer.js';

export interface ServedLog {
  readonly db: Database;
  readonly audit: AuditService;
  /** The pinned verifier key of the log's checkpoints. */
  readonly vkey: string;
  /** GET `/v1/audit/tlog/0/<path>`: the tlog-client's Fetcher. */
  fetch(path: string): Promise<{ status: number; body: Buffer }>;
  /** Append entries until the log has `size`. */
  fill(size: number): Promise<void>;
  /** Stop the log, run `edit` on the store, start again. */
  reopen(edit: (db: Database) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export async function startServedLog(
  origin: string,
  options: { readonly maxBatchSize?: number; readonly logger?: DomainLogger } = {},
): Promise<ServedLog> {
  const signer = testSigner(origin);
  const sim: SimTpm = await startSimTpm();
  const tpm = await NativeTpm.open(sim.tcti);
  const config: TpmAnchorConfig = await provisionAnchor(tpm);
  const work = await tempDir('grantor-tlog-');
  const db = await openDatabase(join(work, 'db'));
  const open = async (provision: boolean) => {
    const audit = createAudit(
      {
        origin,
        minAnchorIntervalMs: 0,
        ...(options.maxBatchSize === undefined ? {} : { maxBatchSize: options.maxBatchSize }),
      },
      {
        db,
        anchor: new TpmAuditAnchor(tpm, config),
        signer,
        ...(options.logger === undefined ? {} : { logger: options.logger }),
      },
    );
    if (provision) await audit.provision();
    await audit.ready();
    const app = createServer();
    await app.register(auditTlogRoutes, { audit });
    await app.ready();
    return { audit, app };
  };
  let served = await open(true);
  const stop = async () => {
    await served.app.close();
    await served.audit.close();
  };
  return {
    db,
    get audit() {
      return served.audit;
    },
    vkey: noteVerifierKey(signer.keyName, signer.publicKey),
    fetch: async (path) => {
      const res = await served.app.inject({ url: `/v1/audit/tlog/0/${path}` });
      return { status: res.statusCode, body: res.rawPayload };
    },
    fill: async (size) => {
      while ((served.audit.treeSize() ?? 0) < size) {
        const from = served.audit.treeSize() ?? 0;
        const n = Math.min(2000, size - from);
        await Promise.all(
          Array.from({ length: n }, (_, i) => served.audit.append(event(from + i))),
        );
      }
    },
    reopen: async (edit) => {
      await stop();
      await edit(db);
      served = await open(false);
    },
    close: async () => {
      try {
        await stop();
        await db.close();
        await tpm.close();
      } finally {
        await sim.destroy();
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}
