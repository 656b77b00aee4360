import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { checkArgs, UsageError } from './args.js';
import { COMMANDS, optionsOf, positionalsOf } from './commands.js';
import type { Io } from './io.js';
import { run, version } from './main.js';

function capture(): { io: Io; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await run(argv, c.io);
  return { code, out: c.out.join('\n'), err: c.err.join('\n') };
}

describe('grantor help and usage (no configuration read)', () => {
  it('--help and help list every command', async () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const r = await cli(...argv);
      expect(r.code).toBe(0);
      for (const c of COMMANDS) expect(r.out).toContain(c.path.join(' '));
    }
  });

  it('no command prints the usage and exits 2', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.err).toContain('usage: grantor <command>');
  });

  it('--version prints the package version', async () => {
    const r = await cli('--version');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`grantor ${version()}`);
    expect(version()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('every command has help with a description and examples', async () => {
    for (const c of COMMANDS) {
      for (const argv of [
        [...c.path, '--help'],
        ['help', ...c.path],
      ]) {
        const r = await cli(...argv);
        expect(r.code, argv.join(' ')).toBe(0);
        expect(r.out).toContain(`usage: grantor ${c.path.join(' ')}`);
        expect(r.out).toContain(c.description);
        expect(r.out).toContain('examples:');
        expect(c.examples.length).toBeGreaterThan(0);
      }
    }
  });

  it('a group shows its commands', async () => {
    const r = await cli('keys', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('keys rotate');
    const missing = await cli('keys');
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('grantor keys: missing command');
  });

  it('refuses an unknown command by name (exit 2)', async () => {
    const r = await cli('frobnicate');
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown command "frobnicate"');
    const sub = await cli('keys', 'frob');
    expect(sub.code).toBe(2);
    expect(sub.err).toContain('unknown command "keys frob"');
    const help = await cli('help', 'nope');
    expect(help.code).toBe(2);
    expect(help.err).toContain('unknown command "nope"');
  });

  it('refuses an unknown option by name (exit 2), before any configuration', async () => {
    const r = await cli('keys', 'list', '--bogus');
    expect(r.code).toBe(2);
    expect(r.err).toBe('grantor keys list: unknown option --bogus (see grantor keys list --help)');
    expect((await cli('provision', '--force')).err).toContain('unknown option --force');
    expect((await cli('keys', 'retire', 'k1', '-x')).err).toContain('unknown option -x');
    // The remote options belong to remote commands only.
    expect((await cli('keys', 'rotate', '--url', 'https://x')).err).toContain(
      'unknown option --url',
    );
    expect((await cli('keys')).code).toBe(2);
  });

  it('refuses a missing value and extra or missing arguments (exit 2)', async () => {
    const noValue = await cli('keys', 'list', '--purpose');
    expect(noValue.code).toBe(2);
    expect(noValue.err).toContain('--purpose needs a value');
    const extra = await cli('keys', 'retire', 'a', 'b');
    expect(extra.code).toBe(2);
    expect(extra.err).toContain('unexpected argument b');
    const missing = await cli('keys', 'retire');
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('missing argument');
    // `[grant|audit]`: optional, at most one.
    const optional = await cli('keys', 'rotate', 'grant', 'audit');
    expect(optional.code).toBe(2);
    expect(optional.err).toContain('unexpected argument audit');
    expect((await cli('status', 'x')).err).toContain('unexpected argument x');
  });

  it('a remote command without an appliance says how to name one, never a stack', async () => {
    const r = await cli('status', '--profile', '/nonexistent/profile.json');
    expect(r.code).toBe(1);
    expect(r.err).toContain('remote_config_invalid');
    expect(r.err).not.toContain('    at ');
  });

  it('operators token with GRANTOR_URL goes through the remote checks: no token over plain http off loopback', async () => {
    const token = `gop_${'0'.repeat(16)}${'A'.repeat(43)}`;
    vi.stubEnv('XDG_CONFIG_HOME', '/nonexistent');
    vi.stubEnv('GRANTOR_PROFILE', '');
    vi.stubEnv('GRANTOR_URL', 'http://appliance.invalid:8080');
    vi.stubEnv('GRANTOR_OPERATOR_TOKEN', token);
    try {
      const r = await cli('operators', 'token', 'list');
      expect(r.code).toBe(1);
      expect(r.err).toContain('remote_config_invalid');
      expect(r.err).toContain('a token is only sent over https');
      expect(`${r.out}${r.err}`).not.toContain(token);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('positionalsOf', () => {
  it('reads the argument bounds from the usage words', () => {
    const of = (path: string) => {
      const c = COMMANDS.find((x) => x.path.join(' ') === path);
      if (c === undefined) throw new Error(path);
      return positionalsOf(c);
    };
    expect(of('status')).toEqual({ min: 0, max: 0 });
    expect(of('keys retire')).toEqual({ min: 1, max: 1 });
    expect(of('keys rotate')).toEqual({ min: 0, max: 1 });
  });
});

describe('checkArgs', () => {
  const options = optionsOf(
    COMMANDS.find((c) => c.path.join(' ') === 'keys list') ?? (COMMANDS[0] as never),
    true,
  );

  it('accepts --name value, --name=value and flags', () => {
    const p = checkArgs(['--purpose=grant', '--json', '--url', 'https://a'], options, {
      min: 0,
      max: 0,
    });
    expect(p.values).toMatchObject({ purpose: 'grant', json: true, url: 'https://a' });
  });

  it('answers any argv with a result or a UsageError, nothing else', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string(),
            fc.constantFrom('--json', '--purpose', '--url', '-h', '--', '-', '--=x', '-1'),
          ),
          { maxLength: 8 },
        ),
        (argv) => {
          try {
            checkArgs(argv, options, { min: 0, max: 2 });
          } catch (e) {
            expect(e).toBeInstanceOf(UsageError);
          }
        },
      ),
    );
  });
});
