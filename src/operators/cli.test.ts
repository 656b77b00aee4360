import { describe, expect, it } from 'vitest';
import { runOperatorsCli, parseDuration } from './cli.js';
import { createFakeOperatorTokens } from './token-store.memory.js';
import { capture, runCli } from './testing/cli-output.js';

describe('grantor operators token', () => {
  it('creates a token, prints it once, lists it without the secret, and revokes it', async () => {
    const svc = createFakeOperatorTokens();
    const argv = ['token', 'create', '--role', 'auditor', '--actor', 'alice', '--ttl', '1d'];
    const created = await runCli(svc, argv);
    expect(created.exit).toBe(0);
    const token = created.lines.at(-1) ?? '';
    expect(token).toMatch(/^gop_/);
    const actor = await svc.authenticate(token);
    expect(actor.role).toBe('auditor');

    const l = await runCli(svc, ['token', 'list']);
    expect(l.exit).toBe(0);
    expect(l.lines).toHaveLength(1);
    expect(l.lines[0]).toContain(actor.id);
    expect(l.lines[0]).toContain('active');
    expect(l.lines.join('\n')).not.toContain(token.slice(4));

    const r = await runCli(svc, ['token', 'revoke', actor.id]);
    expect(r.exit).toBe(0);
    const after = await runCli(svc, ['token', 'list']);
    expect(after.lines[0]).toContain('revoked');
  });

  it('refuses bad usage with exit code 2', async () => {
    const svc = createFakeOperatorTokens();
    for (const argv of [
      [],
      ['tokens', 'list'],
      ['token', 'create', '--role', 'root', '--actor', 'a'],
      ['token', 'create', '--role', 'auditor'],
      ['token', 'create', '--role', 'auditor', '--actor', 'a', '--ttl', 'soon'],
      ['token', 'create', '--role', 'auditor', '--actor', 'a', '--pin', '1234'],
      ['token', 'revoke'],
      ['token', 'list', 'extra'],
      ['token', 'burn'],
    ]) {
      const c = await runCli(svc, argv);
      expect(c.exit).toBe(2);
      expect(c.errors.join('\n')).toContain('usage');
    }
  });

  it.each([
    [['token', 'revoke', 'tok_0000000000000000'], 'operator_token_not_found'],
    [['token', 'create', '--role', 'auditor', '--actor', 'a', '--ttl', '5'], 'bad_request'],
  ])('reports a service refusal of %j by its code %s, exit code 1', async (argv, code) => {
    const refused = await runCli(createFakeOperatorTokens(), argv);
    expect(refused.exit).toBe(1);
    expect(refused.errors[0]).toContain(code);
  });

  it('parses durations', () => {
    expect(parseDuration('90d')).toBe(90 * 86400);
    expect(parseDuration('12h')).toBe(43200);
    expect(parseDuration('30m')).toBe(1800);
    expect(parseDuration('600')).toBe(600);
    expect(parseDuration('1w')).toBeUndefined();
  });
});

describe('grantor operators person (offline bootstrap)', () => {
  it('registers a person with a role, adds a role, and lists them', async () => {
    const svc = createFakeOperatorTokens();
    const c = capture();
    const add = (argv: string[]) => runOperatorsCli(['person', 'add', ...argv], svc, c.out);
    expect(await add(['Alice', '--role', 'operator', '--name', 'Alice Smith'])).toBe(0);
    expect(await add(['alice', '--role', 'auditor'])).toBe(0);
    expect(await add(['alice', '--role', 'root'])).toBe(2);
    expect(await add(['bad id', '--role', 'auditor'])).toBe(1);
    const l = await runCli(svc, ['person', 'list']);
    expect(l.exit).toBe(0);
    expect(l.lines).toEqual(['alice\tAlice Smith\tauditor,operator\t\tactive']);
  });
});
