/**
 * The policy archive in LevelDB: `db.sublevel('policy-archive')`, key = the set's hash,
 * value = its canonical text (archive.ts). Written with a synced batch; never rewritten
 * with other content (the key is the hash of the value), only repaired if the disk's copy
 * no longer hashes to its key.
 */
import { LevelRoom, type Database } from '../shared/db.level.js';
import type { ArchivedPolicySet, PolicyArchive } from './archive.port.js';
import { POLICY_HASH, parseArchivedPolicySet } from './archive.js';
import { canonicalHash, canonicalPolicySet, type PolicySource } from './policy-set.js';

export class LevelPolicyArchive extends LevelRoom implements PolicyArchive {
  constructor(db: Database) {
    super(db, 'policy-archive');
  }

  async keep(source: PolicySource): Promise<string> {
    const canonical = canonicalPolicySet(source);
    const hash = canonicalHash(canonical);
    if ((await this.sub.get(hash)) === canonical) return hash;
    await this.write([{ type: 'put', key: hash, value: canonical }]);
    return hash;
  }

  async get(hash: string): Promise<ArchivedPolicySet | undefined> {
    if (!POLICY_HASH.test(hash)) return undefined;
    const canonical = await this.sub.get(hash);
    return canonical === undefined ? undefined : parseArchivedPolicySet(hash, canonical);
  }
}
