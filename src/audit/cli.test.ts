import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../shared/db.level.js';
import { MemoryAnchor } from './anchor.memory.js';
import type { CheckpointSigner } from './checkpoint.js';
import { noteVerifierKey } from './checkpoint.js';
import { runAuditCli } from './cli.js';
import type { AuditEntry } from './entry.js';
import { entryHash } from './entry.js';
import { createAudit } from './index.js';
import type { AuditExport, AuditService } from './service.js';

const ORIGIN = 'grantor.test/cli';
let dir: string;
let db: Database;
let audit: AuditService;
let signer: CheckpointSigner;
let exported: string;

function capture(): {
  out: string[];
  err: string[];
  out_: { out(l: string): void; err(l: string): void };
} {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, out_: { out: (l) => out.push(l), err: (l) => err.push(l) } };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grantor-audit-cli-'));
  db = await openDatabase(join(dir, 'db'));
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  signer = {
    keyName: ORIGIN,
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    sign: (m) => Promise.resolve(sign(null, m, privateKey)),
  };
  audit = createAudit(
    { origin: ORIGIN, minAnchorIntervalMs: 0 },
    { db, anchor: new MemoryAnchor(), signer },
  );
  await audit.provision();
  for (let i = 0; i < 9; i++) {
    await audit.append({
      type: 'grant.decision',
      subject: `rt_${i}`,
      decision: 'allow',
      digest: createHash('sha256').update(String(i)).digest('hex'),
    });
  }
  const files = new Map<string, string>();
  const c = capture();
  const code = await runAuditCli(
    ['export', 'out.json', '--legacy'],
    {
      openAudit: () => Promise.resolve({ audit, close: () => Promise.resolve() }),
      writeFile: (p, t) => {
        files.set(p, t);
        return Promise.resolve();
      },
    },
    c.out_,
  );
  expect(code).toBe(0);
  exported = files.get('out.json') ?? '';
});

afterAll(async () => {
  await audit.close();
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

async function verify(
  text: string,
  key = noteVerifierKey(signer.keyName, signer.publicKey),
  flags = ['--skip-tpm-evidence'],
) {
  const c = capture();
  const code = await runAuditCli(
    ['verify', 'in.json', '--key', key, ...flags],
    { readFile: () => Promise.resolve(text) },
    c.out_,
  );
  return { code, out: c.out.join('\n'), err: c.err.join('\n') };
}

const edit = (f: (e: AuditExport & { entries: AuditEntry[] }) => void): string => {
  const parsed = JSON.parse(exported) as AuditExport & { entries: AuditEntry[] };
  f(parsed);
  return JSON.stringify(parsed);
};

describe('grantor audit export / verify', () => {
  it('verifies an untouched export, saying that the TPM evidence was skipped', async () => {
    const r = await verify(exported);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^OK: 9 entries .* 9 batches and their extend chain, NV counter 10 \(not checked\)/,
    );
    expect(r.err).toContain('TPM evidence NOT checked');
  });

  it('refuses (exit 1) without a pinned AK and anchor pin unless told to skip TPM evidence', async () => {
    const r = await verify(exported, undefined, []);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/no pinned AK .*\(audit_export_invalid\)$/);
  });

  it('recomputes the batch boundaries: a root, a missing batch, a moved boundary', async () => {
    const badRoot = await verify(
      edit((x) => {
        const b = x.batches as { index: number; size: number; root: string }[];
        b[3] = { ...b[3]!, root: '00'.repeat(32) };
      }),
    );
    expect(badRoot.out).toMatch(
      /batch 3 root is not the root of entries 0\.\.3 .*audit_export_invalid/,
    );
    const missing = await verify(edit((x) => void (x.batches as unknown[]).splice(8, 1)));
    expect(missing.out).toMatch(/batches end at size 8, the checkpoint at 9/);
    const none = await verify(
      edit((x) => {
        delete (x as { batches?: unknown }).batches;
      }),
    );
    expect(none.out).toMatch(/no batch boundaries/);
    // Two batches merged into one: every root still one of the entries', the chain is not.
    const merged = await verify(
      edit((x) => {
        const b = x.batches as { index: number; size: number; root: string }[];
        b.splice(0, 1);
        b.forEach((r, i) => (r.index = i));
      }),
    );
    expect(merged.out).toMatch(/extend chain is not the checkpoint's nv-extend/);
  });

  it('reports the first bad index of a rewritten entry (hash recomputed: link breaks next)', async () => {
    const r = await verify(
      edit((x) => {
        const e = { ...x.entries[3]!, decision: 'deny' };
        x.entries[3] = { ...e, hash: entryHash(e) };
      }),
    );
    expect(r.code).toBe(1);
    expect(r.out).toBe('FAIL at index 4: entry 4: prev hash does not verify (entry_prev_hash)');
  });

  it('reports an edited entry whose hash was left alone', async () => {
    const r = await verify(
      edit((x) => void (x.entries[2] = { ...x.entries[2]!, subject: 'rt_x' })),
    );
    expect(r.out).toMatch(/^FAIL at index 2: .*\(entry_hash\)$/);
  });

  it('reports a removed entry and a truncated export', async () => {
    const removed = await verify(edit((x) => void x.entries.splice(5, 1)));
    expect(removed.out).toMatch(/^FAIL at index 5: .*\(entry_seq\)$/);
    const truncated = await verify(edit((x) => void x.entries.splice(7)));
    expect(truncated.out).toMatch(/^FAIL at index 7: .*\(entries_missing\)$/);
  });

  it('refuses a consistently rebuilt chain: the root is not the signed one', async () => {
    const r = await verify(
      edit((x) => {
        let prev = x.entries[7]!.prevHash;
        for (const i of [7, 8]) {
          const e = { ...x.entries[i]!, prevHash: prev, subject: `rt_forged_${i}` };
          x.entries[i] = { ...e, hash: entryHash(e) };
          prev = x.entries[i].hash;
        }
      }),
    );
    expect(r.out).toMatch(/^FAIL: .*\(audit_export_invalid\)$/);
    expect(r.out).toContain('checkpoint root');
  });

  it('refuses a checkpoint signed by another key, or a changed checkpoint', async () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const other = noteVerifierKey(
      ORIGIN,
      publicKey.export({ format: 'der', type: 'spki' }).subarray(-32),
    );
    expect((await verify(exported, other)).out).toMatch(/audit_note_signature_invalid/);
    const changed = edit((x) => {
      (x.checkpoint as { note: string }).note = x.checkpoint.note.replace('\n9\n', '\n8\n');
    });
    expect((await verify(changed)).out).toMatch(/audit_note_signature_invalid/);
  });

  it('exits 2 on usage errors and unreadable files', async () => {
    const c = capture();
    expect(await runAuditCli(['verify', 'in.json'], {}, c.out_)).toBe(2);
    expect(await runAuditCli(['frobnicate', 'x'], {}, c.out_)).toBe(2);
    expect(await runAuditCli(['export', 'x'], {}, c.out_)).toBe(2);
    const bad = await verify('{not json');
    expect(bad.code).toBe(2);
    expect((await verify(JSON.stringify({ format: 'other' }))).out).toMatch(/audit_export_invalid/);
    expect((await verify(exported, 'not-a-key')).out).toMatch(/audit_verifier_key_invalid/);
  });

  it('the local export and retire: 2 when not configured here; their own exit code on failure, the log closed either way', async () => {
    for (const argv of [
      ['export', 'x.ndjson'],
      ['retire', '1'],
    ]) {
      const c = capture();
      expect(await runAuditCli(argv, {}, c.out_)).toBe(2);
      expect(c.err).toEqual([`audit ${argv[0]}: the appliance is not configured here`]);
    }
    let closed = 0;
    const local = {
      openAudit: () =>
        Promise.resolve({
          audit,
          close: () => {
            closed += 1;
            return Promise.resolve();
          },
        }),
    };
    // Period 7 does not exist: the retirement fails after the log opened (exit 1) ...
    const r = capture();
    expect(await runAuditCli(['retire', '7'], local, r.out_)).toBe(1);
    expect(r.err.join('\n')).toMatch(/^audit retire failed: /);
    expect(r.out).toEqual([]);
    // ... and an export into a directory that does not exist fails the same way (exit 2).
    const e = capture();
    expect(await runAuditCli(['export', join(dir, 'no', 'such.ndjson')], local, e.out_)).toBe(2);
    expect(e.err.join('\n')).toMatch(/^audit export failed: .*ENOENT/);
    expect(closed).toBe(2);
  });

  it('one CLI for both formats: a local bundle export, and verify telling the formats apart on disk', async () => {
    const key = noteVerifierKey(signer.keyName, signer.publicKey);
    const local = {
      openAudit: () => Promise.resolve({ audit, close: () => Promise.resolve() }),
    };
    const file = join(dir, 'local.ndjson');
    const c = capture();
    expect(await runAuditCli(['export', file, '--to', '5'], local, c.out_)).toBe(0);
    expect(c.out.join('\n')).toContain('exported an evidence bundle of 5 entries');
    // Never overwrites evidence: the same error path and message shape as any export failure.
    const again = capture();
    expect(await runAuditCli(['export', file], local, again.out_)).toBe(2);
    expect(again.err.join('\n')).toMatch(/^audit export failed: .*EEXIST/);
    // The bound given by the caller (GRANTOR_AUDIT_EXPORT_MAX_ENTRIES) is the bundle's.
    const bounded = capture();
    const tooMany = await runAuditCli(
      ['export', join(dir, 'big.ndjson'), '--to', '5'],
      {
        openAudit: () => Promise.resolve({ audit, maxEntries: 4, close: () => Promise.resolve() }),
      },
      bounded.out_,
    );
    expect(tooMany).toBe(2);
    expect(bounded.err.join('\n')).toContain('audit_export_range_too_large');
    const bad = capture();
    expect(
      await runAuditCli(['export', join(dir, 'x.ndjson'), '--from', '-1'], local, bad.out_),
    ).toBe(2);
    expect(bad.err.join('\n')).toContain('--from must be a non-negative integer');

    const ok = capture();
    const args = ['--key', key, '--skip-tpm-evidence'];
    expect(await runAuditCli(['verify', file, ...args], {}, ok.out_)).toBe(0);
    expect(ok.out.join('\n')).toMatch(/^OK: evidence bundle of /);
    const legacyFile = join(dir, 'legacy.json');
    await writeFile(legacyFile, exported);
    const legacy = capture();
    expect(await runAuditCli(['verify', legacyFile, ...args], {}, legacy.out_)).toBe(0);
    expect(legacy.out.join('\n')).toMatch(/^OK: 9 entries of /);
  });

  it('two files are compared only as bundles, and without --nonce or --since-checkpoint (exit 2)', async () => {
    const key = noteVerifierKey(signer.keyName, signer.publicKey);
    const local = {
      openAudit: () => Promise.resolve({ audit, close: () => Promise.resolve() }),
    };
    const bundle = join(dir, 'pair.ndjson');
    expect(await runAuditCli(['export', bundle], local, capture().out_)).toBe(0);
    const legacyFile = join(dir, 'pair-legacy.json');
    await writeFile(legacyFile, exported);
    const args = ['--key', key, '--skip-tpm-evidence'];
    const mixed = capture();
    expect(await runAuditCli(['verify', bundle, legacyFile, ...args], {}, mixed.out_)).toBe(2);
    expect(mixed.err.join('\n')).toContain('compared only as evidence bundles');
    const nonce = capture();
    expect(
      await runAuditCli(['verify', bundle, bundle, ...args, '--nonce', 'ab'], {}, nonce.out_),
    ).toBe(2);
    expect(nonce.err.join('\n')).toContain('one bundle at a time');
    // The same period twice: both verify, the pair does not (exit 1, its code).
    const twice = capture();
    expect(await runAuditCli(['verify', bundle, bundle, ...args], {}, twice.out_)).toBe(1);
    expect(twice.out.at(-1)).toMatch(/^FAIL across .* \(pair_not_consecutive\)$/);
  });
});
