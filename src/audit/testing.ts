/**
 * Test helpers of the audit domain: a node:crypto Ed25519 checkpoint signer (production:
 * the HSM's audit key), for the log's unit tests and the other domains' tests of it, and
 * LevelDB databases in temporary folders for the unit tests on the real store.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../shared/db.level.js';
import { jcsSha256Hex } from '../shared/jcs.js';
import type { BundlePolicySet } from './bundle.js';
import type { CheckpointSigner } from './checkpoint.js';
import type { AuditEvent } from './entry.js';

export function testSigner(keyName: string): CheckpointSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    keyName,
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
}

/** Databases, each in a new folder named `<prefix>…`; `cleanup()` (afterEach) closes and deletes them. */
export class TempDatabases {
  readonly #prefix: string;
  #dirs: string[] = [];
  #dbs: Database[] = [];

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  async open(): Promise<Database> {
    const dir = await mkdtemp(join(tmpdir(), this.#prefix));
    this.#dirs.push(dir);
    const db = await openDatabase(dir);
    this.#dbs.push(db);
    return db;
  }

  async cleanup(): Promise<void> {
    const dbs = this.#dbs;
    const dirs = this.#dirs;
    this.#dbs = [];
    this.#dirs = [];
    for (const db of dbs) await db.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

/** The one policy set the retention tests' decisions name, and an archive that holds it. */
const RETAIN_SET = {
  schema: 'entity Runtime;',
  policies: { 'a.cedar': 'permit(principal, action, resource);' },
};
export const RETAIN_SET_HASH = jcsSha256Hex({
  policies: RETAIN_SET.policies,
  schema: RETAIN_SET.schema,
});
export const retainArchive = (h: string): Promise<BundlePolicySet | undefined> =>
  Promise.resolve(h === RETAIN_SET_HASH ? { hash: RETAIN_SET_HASH, ...RETAIN_SET } : undefined);

/** Decision `i` of the retention tests: an allow naming the set, with its body. */
export function retainDecision(i: number): AuditEvent {
  const body = JSON.stringify({ runtimeId: 'rt_1', n: i });
  return {
    type: 'grant.decision',
    subject: `gr_${i}`,
    decision: 'allow',
    reasons: [`pol:${RETAIN_SET_HASH}`],
    digest: createHash('sha256').update(body).digest('hex'),
    body,
  };
}
