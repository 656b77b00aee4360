/** The policy archive in memory, for service tests (the real one: archive.level.ts). */
import type { ArchivedPolicySet, PolicyArchive } from './archive.port.js';
import { parseArchivedPolicySet } from './archive.js';
import { canonicalHash, canonicalPolicySet, type PolicySource } from './policy-set.js';

export class MemoryPolicyArchive implements PolicyArchive {
  readonly texts = new Map<string, string>();

  keep(source: PolicySource): Promise<string> {
    const canonical = canonicalPolicySet(source);
    const hash = canonicalHash(canonical);
    this.texts.set(hash, canonical);
    return Promise.resolve(hash);
  }

  get(hash: string): Promise<ArchivedPolicySet | undefined> {
    const text = this.texts.get(hash);
    return Promise.resolve(text === undefined ? undefined : parseArchivedPolicySet(hash, text));
  }
}

export function createFakePolicyArchive(): MemoryPolicyArchive {
  return new MemoryPolicyArchive();
}
