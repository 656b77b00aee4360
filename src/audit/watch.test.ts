import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { formatCheckpoint, parseVerifierKey, noteVerifierKey, signNote } from './checkpoint.js';
import {
  formatState,
  parseState,
  readState,
  visit,
  writeState,
  type WatchSource,
} from './watch.js';
import { WatchAlarmError, WatchStateError } from './errors.js';

const ORIGIN = 'grantor.test/watch-unit';
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
const signer = {
  keyName: ORIGIN,
  publicKey: raw,
  sign: (m: Uint8Array) => Promise.resolve(sign(null, m, privateKey)),
};
const keys = [parseVerifierKey(noteVerifierKey(ORIGIN, raw))];

const note = (size: number, counter: bigint): Promise<string> =>
  signNote(
    formatCheckpoint({
      origin: ORIGIN,
      size,
      root: Buffer.alloc(32, size),
      counter,
      extendValue: Buffer.alloc(32, 7),
    }),
    signer,
  );

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('the watch state file', () => {
  it('round-trips through an atomic write; a missing file is a first visit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grantor-watch-unit-'));
    dirs.push(dir);
    const path = join(dir, 'state.json');
    expect(await readState(path, keys)).toBeUndefined();
    const first = await visit(
      undefined,
      keys,
      {
        checkpoint: async () => ({ note: await note(0, 5n) }),
        consistency: () => Promise.reject(new Error('unused')),
        inclusion: () => Promise.reject(new Error('unused')),
        link: () => Promise.reject(new Error('unused')),
      },
      () => 0,
    );
    await writeState(path, first.state);
    const back = await readState(path, keys);
    expect(back?.checkpoint.size).toBe(0);
    expect(await readFile(path, 'utf8')).toBe(formatState(first.state));
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('parses arbitrary text into a state or refuses it with its own code', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        try {
          parseState(text, keys);
        } catch (e) {
          expect(e).toBeInstanceOf(WatchStateError);
          expect((e as WatchStateError).code).toBe('audit_watch_state_invalid');
        }
      }),
    );
  });

  it('refuses a state whose note the pinned key does not vouch for', async () => {
    const good = formatState({
      note: await note(4, 9n),
      checkpoint: {
        origin: ORIGIN,
        size: 4,
        root: Buffer.alloc(32, 4),
        counter: 9n,
        extendValue: Buffer.alloc(32, 7),
      },
      verifiedAt: new Date(0).toISOString(),
    });
    expect(parseState(good, keys).checkpoint.size).toBe(4);
    const edited = good.replace('\\n4\\n', '\\n2\\n');
    expect(edited).not.toBe(good);
    expect(() => parseState(edited, keys)).toThrow(WatchStateError);
    const dir = await mkdtemp(join(tmpdir(), 'grantor-watch-unit-'));
    dirs.push(dir);
    await writeFile(join(dir, 's.json'), edited);
    await expect(readState(join(dir, 's.json'), keys)).rejects.toMatchObject({
      code: 'audit_watch_state_invalid',
    });
  });
});

describe('a visit', () => {
  const source = (n: string, proof: unknown): WatchSource => ({
    checkpoint: () => Promise.resolve({ note: n }),
    consistency: () => Promise.resolve(proof),
    inclusion: () => Promise.resolve(null),
    link: () => Promise.resolve(null),
  });

  it('alarms with a code per class', async () => {
    const prev = (await visit(undefined, keys, source(await note(4, 9n), null), Date.now)).state;
    const cases: [string, WatchSource][] = [
      ['audit_watch_tree_shrunk', source(await note(3, 10n), null)],
      ['audit_watch_root_mismatch', source(await note(4, 10n), null)],
      ['audit_watch_anchor_regressed', source(await note(6, 9n), null)],
      ['audit_watch_proof_invalid', source(await note(6, 10n), { from: 4, to: 6, path: [] })],
      ['audit_watch_proof_invalid', source(await note(6, 10n), { from: 3, to: 6, path: [] })],
      ['audit_watch_proof_invalid', source(await note(6, 10n), 'nonsense')],
      ['audit_watch_checkpoint_malformed', source('no note', null)],
      [
        'audit_watch_checkpoint_malformed',
        { ...source('', null), checkpoint: () => Promise.resolve([]) },
      ],
    ];
    for (const [code, s] of cases) {
      const e = await visit(prev, keys, s, Date.now).catch((x: unknown) => x);
      expect(e, code).toBeInstanceOf(WatchAlarmError);
      expect((e as WatchAlarmError).code).toBe(code);
    }
  });
});
