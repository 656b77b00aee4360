/**
 * Test helpers of the audit domain: a node:crypto Ed25519 checkpoint signer (production:
 * the HSM's audit key), for the log's unit tests and the other domains' tests of it, and
 * LevelDB databases in temporary folders for the unit tests on the real store.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../shared/db.level.js';
import type { CheckpointSigner } from './checkpoint.js';

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
