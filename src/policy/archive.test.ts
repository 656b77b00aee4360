import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { parseArchivedPolicySet } from './archive.js';
import { LevelPolicyArchive } from './archive.level.js';
import { cedarWasm } from './cedar.wasm.js';
import { PolicyEngine } from './engine.js';
import { canonicalPolicySet, policySetHash, type PolicySource } from './policy-set.js';

vi.setConfig({ testTimeout: 30_000 });

const SCHEMA_FILE = new URL('../../policies/grantor.cedarschema', import.meta.url);
const ALLOW_READ = `@id("read") permit(principal, action == Action::"tickets.read", resource);`;
const ALLOW_ALL_READ = `@id("read-all") permit(principal, action == Action::"tickets.read", resource);`;

let dir: string;
let db: Database;
let policyDir: string;
let schemaFile: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-policy-archive-'));
  db = await openDatabase(join(dir, 'db'));
  policyDir = join(dir, 'set');
  schemaFile = join(dir, 'grantor.cedarschema');
  await mkdir(policyDir);
  await writeFile(schemaFile, await readFile(SCHEMA_FILE));
  await writeFile(join(policyDir, 'a.cedar'), ALLOW_READ);
});

afterEach(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

const source: PolicySource = {
  schema: 'entity Runtime;',
  files: [
    { name: 'b.cedar', text: 'permit(principal, action, resource);' },
    { name: 'a.cedar', text: '// é\n' },
  ],
};

describe('the policy archive (LevelDB)', () => {
  it('keeps a set under its policy hash and gives back exactly its texts', async () => {
    const archive = new LevelPolicyArchive(db);
    const hash = await archive.keep(source);
    expect(hash).toBe(policySetHash(source));
    const got = await archive.get(hash);
    expect(got?.schema).toBe(source.schema);
    expect(got?.policies).toEqual({ 'a.cedar': '// é\n', 'b.cedar': source.files[0]?.text });
    expect(got?.canonical).toBe(canonicalPolicySet(source));
    expect(await archive.keep(source)).toBe(hash);
  });

  it('answers nothing for an unknown or malformed hash', async () => {
    const archive = new LevelPolicyArchive(db);
    expect(await archive.get('ab'.repeat(32))).toBeUndefined();
    expect(await archive.get('not a hash')).toBeUndefined();
  });

  it('never answers a stored text edited on disk, and a later keep repairs it', async () => {
    const archive = new LevelPolicyArchive(db);
    const hash = await archive.keep(source);
    const sub = db.sublevel('policy-archive', { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await sub.put(hash, canonicalPolicySet({ ...source, schema: 'entity Other;' }));
    expect(await archive.get(hash)).toBeUndefined();
    await archive.keep(source);
    expect((await archive.get(hash))?.schema).toBe(source.schema);
  });

  it('hashes and keeps a file named __proto__ as a file (found by the property below)', () => {
    const s = { schema: 'entity A;', files: [{ name: '__proto__', text: '' }] };
    const without = { schema: 'entity A;', files: [] };
    expect(policySetHash(s)).not.toBe(policySetHash(without));
    const got = parseArchivedPolicySet(policySetHash(s), canonicalPolicySet(s));
    expect(got === undefined ? undefined : Object.entries(got.policies)).toEqual([
      ['__proto__', ''],
    ]);
  });

  it('parses arbitrary text into a set that hashes to the hash asked, or nothing', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (hashish, text) => {
        const got = parseArchivedPolicySet(hashish, text);
        return got === undefined || got.hash === hashish;
      }),
    );
    fc.assert(
      fc.property(fc.string(), fc.dictionary(fc.string(), fc.string()), (schema, policies) => {
        const files = Object.entries(policies).map(([name, text]) => ({ name, text }));
        const s = { schema, files };
        const got = parseArchivedPolicySet(policySetHash(s), canonicalPolicySet(s));
        return got?.schema === schema && Object.keys(got.policies).length === files.length;
      }),
    );
  });
});

describe('the engine keeps every set before it activates it', () => {
  it('archives the first set and each reloaded one under the hash decisions name', async () => {
    const archive = new LevelPolicyArchive(db);
    const e = new PolicyEngine({
      policyDir,
      schemaFile,
      cedar: cedarWasm,
      keep: (s) => archive.keep(s),
    });
    const first = await e.reload();
    await writeFile(join(policyDir, 'a.cedar'), ALLOW_ALL_READ);
    const second = await e.reload();
    expect(second.hash).not.toBe(first.hash);
    for (const info of [first, second]) {
      const kept = await archive.get(info.hash);
      const files = Object.entries(kept?.policies ?? {}).map(([name, text]) => ({ name, text }));
      // Recomputed from the kept texts, not taken from the archive's word.
      expect(policySetHash({ schema: kept?.schema ?? '', files })).toBe(info.hash);
    }
    expect((await archive.get(second.hash))?.policies['a.cedar']).toBe(ALLOW_ALL_READ);
  });

  it('refuses to activate a set it cannot keep (policy_unavailable), the previous set stays', async () => {
    let fail = false;
    const e = new PolicyEngine({
      policyDir,
      schemaFile,
      cedar: cedarWasm,
      keep: () => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve()),
    });
    const first = await e.reload();
    await writeFile(join(policyDir, 'a.cedar'), ALLOW_ALL_READ);
    fail = true;
    await expect(e.reload()).rejects.toMatchObject({ code: 'policy_unavailable' });
    expect(e.info()?.hash).toBe(first.hash);
  });

  it('does not keep a set that does not compile', async () => {
    const kept: string[] = [];
    const e = new PolicyEngine({
      policyDir,
      schemaFile,
      cedar: cedarWasm,
      keep: (s) => {
        kept.push(policySetHash(s));
        return Promise.resolve();
      },
    });
    await e.reload();
    await writeFile(join(policyDir, 'a.cedar'), 'permit(principal, action, resource) when {');
    await expect(e.reload()).rejects.toMatchObject({ code: 'policy_set_invalid' });
    expect(kept).toHaveLength(1);
  });
});
