import { describe, expect, it } from 'vitest';
import { runKeysCli } from './cli.js';
import { fakeKeys, type FakeKeys, activeGrantKid } from './testing.js';

async function cli(f: FakeKeys, ...argv: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const code = await runKeysCli(argv, f.keys, (l) => lines.push(l));
  return { code, lines };
}

const claims = (f: FakeKeys, ttl: number): { exp: number } => ({
  exp: Math.floor(f.now() / 1000) + ttl,
});

describe('grantor keys', () => {
  it('list prints every key, filters by purpose, and has a JSON form without HSM ids', async () => {
    const f = await fakeKeys();
    const all = await cli(f, 'list');
    expect(all.code).toBe(0);
    expect(all.lines[0]).toBe('kid\tpurpose\talg\tstate\tcreated\tlabel');
    // The active and the next grant key, and the audit key.
    expect(all.lines).toHaveLength(4);
    const grant = await cli(f, 'list', '--purpose', 'grant');
    expect(grant.lines.slice(1).map((l) => l.split('\t')[1])).toEqual(['grant', 'grant']);
    expect(grant.lines[1]?.split('\t')[0]).toBe(activeGrantKid(f.keys));
    const json = await cli(f, 'list', '--json');
    const parsed = JSON.parse(json.lines[0] ?? '') as Record<string, unknown>[];
    expect(parsed).toHaveLength(3);
    for (const r of parsed) expect(r).not.toHaveProperty('hsmId');
  });

  it('rotate makes a new active key and prints the previous one', async () => {
    const f = await fakeKeys();
    const old = activeGrantKid(f.keys);
    const r = await cli(f, 'rotate');
    expect(r.code).toBe(0);
    expect(r.lines[0]).toMatch(
      new RegExp(`^active\\t${activeGrantKid(f.keys)}\\tgrant\\tES256\\tactive`),
    );
    expect(r.lines[1]).toMatch(new RegExp(`^previous\\t${old}\\tgrant\\tES256\\tretiring`));
    const audit = await cli(f, 'rotate', 'audit');
    expect(audit.code).toBe(0);
    expect(audit.lines[1]).toContain('\tretired\t');
  });

  it('retire refuses an active key, an unknown key and a key with live grants; --force overrides', async () => {
    const f = await fakeKeys();
    const old = activeGrantKid(f.keys);
    expect(await cli(f, 'retire', old)).toEqual({
      code: 1,
      lines: [expect.stringMatching(/^error: key_state_invalid: /)],
    });
    expect(await cli(f, 'retire', 'nope')).toEqual({
      code: 1,
      lines: [expect.stringMatching(/^error: key_not_found: /)],
    });
    await f.keys.signJws({}, claims(f, 200));
    await cli(f, 'rotate');
    expect((await cli(f, 'retire', old)).lines[0]).toMatch(/^error: key_state_invalid: /);
    f.advance(200);
    const ok = await cli(f, 'retire', old);
    expect(ok.code).toBe(0);
    expect(ok.lines[0]).toContain('\tretired\t');
    expect(f.keys.jwks().keys.map((k) => k.kid)).not.toContain(old);
  });

  it('retire --force unpublishes a key whose grants are still live', async () => {
    const f = await fakeKeys();
    const old = activeGrantKid(f.keys);
    await f.keys.signJws({}, claims(f, 200));
    await cli(f, 'rotate');
    expect((await cli(f, 'retire', old, '--force')).code).toBe(0);
    expect(f.events.at(-1)).toMatchObject({ type: 'key_retired', kid: old, reason: 'forced' });
  });

  it('destroy needs --yes and a retired key, and removes the HSM objects', async () => {
    const f = await fakeKeys();
    const old = f.keys.get(activeGrantKid(f.keys));
    expect((await cli(f, 'destroy', old.kid, '--yes')).lines[0]).toMatch(
      /^error: key_state_invalid: /,
    );
    await cli(f, 'rotate');
    await cli(f, 'retire', old.kid, '--force');
    const unconfirmed = await cli(f, 'destroy', old.kid);
    expect(unconfirmed.code).toBe(2);
    expect(f.signer.has(old.hsmId)).toBe(true);
    const done = await cli(f, 'destroy', old.kid, '--yes');
    expect(done.code).toBe(0);
    expect(done.lines[0]).toContain('destroyed=');
    expect(f.signer.has(old.hsmId)).toBe(false);
    expect((await cli(f, 'destroy', old.kid, '--yes')).lines[0]).toMatch(
      /^error: key_state_invalid: /,
    );
  });

  it.each([
    [[]],
    [['frobnicate']],
    [['list', '--purpose', 'root']],
    [['rotate', 'root']],
    [['rotate', 'grant', 'audit']],
    [['retire']],
    [['destroy']],
  ])('answers usage (exit 2) to %j', async (argv) => {
    const f = await fakeKeys();
    const r = await cli(f, ...argv);
    expect(r.code).toBe(2);
    expect(r.lines[0]).toMatch(/^error: /);
    expect(r.lines.some((l) => l.startsWith('usage: grantor keys'))).toBe(true);
  });
});
